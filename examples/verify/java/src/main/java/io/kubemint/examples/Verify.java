// Verify a kubemint access token (RFC 9068) with Nimbus JOSE+JWT.
// Usage: java -jar target/verify.jar [TOKEN]
package io.kubemint.examples;

import com.nimbusds.jose.JOSEObjectType;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.DefaultJOSEObjectTypeVerifier;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jose.util.JSONObjectUtils;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import java.net.URI;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

public final class Verify {
  // Pinned: never "none" or HS*. Narrow this to the algorithms of your issuer's SigningKeys.
  // Not EdDSA: Nimbus's JWT processor (and so Spring Security's NimbusJwtDecoder) cannot verify
  // it; sign tokens for Java APIs with ES256 (the SigningKey default), ES384, RS256 or PS256.
  static final Set<JWSAlgorithm> ALGORITHMS =
      Set.of(JWSAlgorithm.ES256, JWSAlgorithm.ES384, JWSAlgorithm.RS256, JWSAlgorithm.PS256);

  static DefaultJWTProcessor<SecurityContext> processor(
      String jwksUrl, String issuer, String audience) throws Exception {
    // Build once per process: it caches the keys and re-fetches (rate limited) on an unknown kid;
    // a failed fetch is retried once.
    JWKSource<SecurityContext> keys =
        JWKSourceBuilder.create(URI.create(jwksUrl).toURL()).retrying(true).build();
    var processor = new DefaultJWTProcessor<SecurityContext>();
    processor.setJWSKeySelector(new JWSVerificationKeySelector<>(ALGORITHMS, keys));
    // An access token, not an ID token or some other JWT signed by the same keys.
    processor.setJWSTypeVerifier(new DefaultJOSEObjectTypeVerifier<>(
        new JOSEObjectType("at+jwt"), new JOSEObjectType("application/at+jwt")));
    var claims = new DefaultJWTClaimsVerifier<SecurityContext>(
        audience, // tokens minted for another API are not for us
        new JWTClaimsSet.Builder().issuer(issuer).build(), // exact match
        Set.of("exp", "iat", "sub", "client_id"));
    claims.setMaxClockSkew(30); // seconds of leeway on exp and nbf
    processor.setJWTClaimsSetVerifier(claims);
    return processor;
  }

  static String env(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) throw new IllegalArgumentException(name + " is not set");
    return value;
  }

  public static void main(String[] args) {
    try {
      String token = args.length > 0 ? args[0] : env("KUBEMINT_TOKEN");
      JWTClaimsSet claims = processor(env("KUBEMINT_JWKS_URL"), env("KUBEMINT_ISSUER"),
          env("KUBEMINT_AUDIENCE")).process(token, null);
      String scope = claims.getStringClaim("scope");
      String required = System.getenv("KUBEMINT_REQUIRED_SCOPE");
      if (required != null && !required.isEmpty()
          && (scope == null || !Arrays.asList(scope.split(" ")).contains(required))) {
        throw new SecurityException("insufficient scope: " + required + " is missing");
      }
      Map<String, Object> out = new LinkedHashMap<>();
      out.put("sub", claims.getSubject());
      out.put("client_id", claims.getStringClaim("client_id"));
      out.put("scope", scope);
      System.out.println(JSONObjectUtils.toJSONString(out));
    } catch (Exception e) {
      System.err.println("invalid token: " + e.getClass().getSimpleName() + ": " + e.getMessage());
      System.exit(1);
    }
  }
}
