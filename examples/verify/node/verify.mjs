// Verify a kubemint access token (RFC 9068) with jose. Usage: node verify.mjs [TOKEN]
import { createRemoteJWKSet, jwtVerify } from 'jose'

// Pinned: never "none" or HS*. Narrow this to the algorithms of your issuer's SigningKeys.
const ALGORITHMS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA']
// Unset, jose would skip the issuer or audience check: refuse to run without them.
const env = (name) => process.env[name] || fail(`${name} is not set`)
const fail = (message) => { throw new Error(message) }

try {
  const token = process.argv[2] ?? env('KUBEMINT_TOKEN')
  // Create once per process: it caches the keys, refetched at most every 30 s on an unknown kid.
  const jwks = createRemoteJWKSet(new URL(env('KUBEMINT_JWKS_URL')))
  const { payload } = await jwtVerify(token, jwks, {
    algorithms: ALGORITHMS,
    typ: 'at+jwt', // an access token, not an ID token or some other JWT signed by the same keys
    issuer: env('KUBEMINT_ISSUER'),
    audience: env('KUBEMINT_AUDIENCE'), // tokens minted for another API are not for us
    clockTolerance: 30, // seconds of leeway on exp and nbf
    requiredClaims: ['exp', 'iat', 'sub', 'client_id'],
  })
  const required = process.env.KUBEMINT_REQUIRED_SCOPE
  if (required && !String(payload.scope ?? '').split(' ').includes(required)) {
    fail(`insufficient scope: ${required} is missing`)
  }
  const { sub, client_id, scope } = payload
  console.log(JSON.stringify({ sub, client_id, scope }))
} catch (error) {
  console.error(`invalid token: ${error.code ?? error.name}: ${error.message}`)
  process.exit(1)
}
