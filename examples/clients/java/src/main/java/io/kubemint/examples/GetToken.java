package io.kubemint.examples;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.oauth2.sdk.AccessTokenResponse;
import com.nimbusds.oauth2.sdk.ClientCredentialsGrant;
import com.nimbusds.oauth2.sdk.ErrorObject;
import com.nimbusds.oauth2.sdk.Scope;
import com.nimbusds.oauth2.sdk.TokenRequest;
import com.nimbusds.oauth2.sdk.TokenResponse;
import com.nimbusds.oauth2.sdk.auth.ClientAuthentication;
import com.nimbusds.oauth2.sdk.auth.ClientSecretBasic;
import com.nimbusds.oauth2.sdk.auth.ClientSecretJWT;
import com.nimbusds.oauth2.sdk.auth.ClientSecretPost;
import com.nimbusds.oauth2.sdk.auth.PrivateKeyJWT;
import com.nimbusds.oauth2.sdk.auth.Secret;
import com.nimbusds.oauth2.sdk.id.ClientID;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;

/**
 * Get a kubemint access token with the Nimbus OAuth 2.0 SDK (client_credentials), its defaults
 * unchanged.
 *
 * <p>Settings from the environment: KUBEMINT_TOKEN_URL, KUBEMINT_CLIENT_ID, KUBEMINT_AUTH_METHOD
 * (client_secret_basic, client_secret_post, client_secret_jwt or private_key_jwt),
 * KUBEMINT_CLIENT_SECRET (the secret methods) or KUBEMINT_PRIVATE_KEY_FILE (private_key_jwt: a
 * PKCS#8 PEM EC P-256 key whose public half is in the client's spec.jwks), KUBEMINT_SCOPE
 * (optional). Prints the token response as JSON, or one line {@code token request failed: …} on
 * stderr and exits 1.
 */
public final class GetToken {
  public static void main(String[] args) throws Exception {
    URI tokenUrl = new URI(System.getenv("KUBEMINT_TOKEN_URL"));
    ClientID clientId = new ClientID(System.getenv("KUBEMINT_CLIENT_ID"));
    String method = System.getenv().getOrDefault("KUBEMINT_AUTH_METHOD", "client_secret_basic");
    String scope = System.getenv("KUBEMINT_SCOPE");
    try {
      TokenRequest request =
          new TokenRequest(
              tokenUrl,
              authentication(method, clientId, tokenUrl),
              new ClientCredentialsGrant(),
              scope == null || scope.isEmpty() ? null : Scope.parse(scope));
      TokenResponse response = TokenResponse.parse(request.toHTTPRequest().send());
      if (!response.indicatesSuccess()) {
        ErrorObject error = response.toErrorResponse().getErrorObject();
        System.err.println(
            "token request failed: " + error.getCode() + ": " + error.getDescription());
        System.exit(1);
      }
      AccessTokenResponse tokens = response.toSuccessResponse();
      System.out.println(tokens.toJSONObject().toString());
    } catch (Exception e) {
      System.err.println("token request failed: " + e);
      System.exit(1);
    }
  }

  private static ClientAuthentication authentication(String method, ClientID id, URI tokenUrl)
      throws Exception {
    switch (method) {
      case "client_secret_basic":
        return new ClientSecretBasic(id, secret());
      case "client_secret_post":
        return new ClientSecretPost(id, secret());
      case "client_secret_jwt":
        return new ClientSecretJWT(id, tokenUrl, JWSAlgorithm.HS256, secret());
      case "private_key_jwt":
        return new PrivateKeyJWT(id, tokenUrl, JWSAlgorithm.ES256, privateKey(), null, null);
      default:
        throw new IllegalArgumentException("unknown KUBEMINT_AUTH_METHOD " + method);
    }
  }

  private static Secret secret() {
    return new Secret(System.getenv("KUBEMINT_CLIENT_SECRET"));
  }

  private static PrivateKey privateKey() throws Exception {
    String pem = Files.readString(Path.of(System.getenv("KUBEMINT_PRIVATE_KEY_FILE")));
    String body = pem.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
    PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(Base64.getDecoder().decode(body));
    return KeyFactory.getInstance("EC").generatePrivate(spec);
  }
}
