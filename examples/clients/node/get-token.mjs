// Get a kubemint access token with openid-client (client_credentials), its defaults unchanged.
//
// Settings from the environment: KUBEMINT_ISSUER (discovery: <issuer>/.well-known/…),
// KUBEMINT_CLIENT_ID, KUBEMINT_AUTH_METHOD (client_secret_basic, client_secret_post,
// client_secret_jwt or private_key_jwt), KUBEMINT_CLIENT_SECRET (the secret methods) or
// KUBEMINT_PRIVATE_KEY_FILE (private_key_jwt: a PKCS#8 PEM EC P-256 key whose public half is in
// the client's spec.jwks), KUBEMINT_SCOPE (optional). Prints the token response as JSON, or one
// line `token request failed: …` on stderr and exits 1.
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as client from 'openid-client';

async function authentication(method) {
  const secret = process.env.KUBEMINT_CLIENT_SECRET;
  switch (method) {
    case 'client_secret_basic':
      return client.ClientSecretBasic(secret);
    case 'client_secret_post':
      return client.ClientSecretPost(secret);
    case 'client_secret_jwt':
      return client.ClientSecretJwt(secret);
    case 'private_key_jwt': {
      const pem = readFileSync(process.env.KUBEMINT_PRIVATE_KEY_FILE, 'utf8');
      const der = createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' });
      const key = await crypto.subtle.importKey(
        'pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      return client.PrivateKeyJwt(key);
    }
    default:
      throw new Error(`unknown KUBEMINT_AUTH_METHOD ${method}`);
  }
}

try {
  const issuer = new URL(process.env.KUBEMINT_ISSUER);
  const method = process.env.KUBEMINT_AUTH_METHOD || 'client_secret_basic';
  // openid-client refuses plain http unless told: only for a local issuer without TLS.
  const options = issuer.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : {};
  const config = await client.discovery(
    issuer, process.env.KUBEMINT_CLIENT_ID, undefined, await authentication(method), options);
  const parameters = process.env.KUBEMINT_SCOPE ? { scope: process.env.KUBEMINT_SCOPE } : {};
  const tokens = await client.clientCredentialsGrant(config, parameters);
  console.log(JSON.stringify(tokens));
} catch (error) {
  console.error(`token request failed: ${error.message}${error.error ? ` (${error.error})` : ''}`);
  process.exit(1);
}
