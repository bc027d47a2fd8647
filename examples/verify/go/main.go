// Verify a kubemint access token (RFC 9068) with golang-jwt and keyfunc.
// Usage: go run . [TOKEN]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Pinned: never "none" or HS*. Narrow this to the algorithms of your issuer's SigningKeys.
var algorithms = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

type claims struct {
	jwt.RegisteredClaims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

// Unset, golang-jwt would skip the issuer or audience check: refuse to run without them.
func mustEnv(name string) string {
	value := os.Getenv(name)
	if value == "" {
		fmt.Fprintln(os.Stderr, "invalid token:", name, "is not set")
		os.Exit(1)
	}
	return value
}

func verify(jwks keyfunc.Keyfunc, token string) (*claims, error) {
	parsed, err := jwt.ParseWithClaims(token, &claims{}, func(t *jwt.Token) (any, error) {
		// An access token, not an ID token or some other JWT signed by the same keys.
		typ, _ := t.Header["typ"].(string)
		if typ = strings.ToLower(typ); typ != "at+jwt" && typ != "application/at+jwt" {
			return nil, errors.New("typ is not at+jwt")
		}
		return jwks.Keyfunc(t) // the key with the token's kid; its alg must match the token's
	},
		jwt.WithValidMethods(algorithms),
		jwt.WithIssuer(mustEnv("KUBEMINT_ISSUER")),
		jwt.WithAudience(mustEnv("KUBEMINT_AUDIENCE")), // tokens minted for another API are not for us
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30*time.Second), // on exp, nbf and iat
	)
	if err != nil {
		return nil, err
	}
	c := parsed.Claims.(*claims)
	if c.Subject == "" || c.ClientID == "" {
		return nil, errors.New("sub or client_id is missing")
	}
	s := os.Getenv("KUBEMINT_REQUIRED_SCOPE")
	if s != "" && !slices.Contains(strings.Fields(c.Scope), s) {
		return nil, fmt.Errorf("insufficient scope: %s is missing", s)
	}
	return c, nil
}

func main() {
	var token string
	if len(os.Args) > 1 {
		token = os.Args[1]
	} else {
		token = mustEnv("KUBEMINT_TOKEN")
	}
	// Create once per process: it caches the keys, refreshes them hourly and on an unknown kid
	// (rate limited), until the context ends.
	jwks, err := keyfunc.NewDefaultCtx(context.Background(), []string{mustEnv("KUBEMINT_JWKS_URL")})
	var c *claims
	if err == nil {
		c, err = verify(jwks, token)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "invalid token:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]string{
		"sub": c.Subject, "client_id": c.ClientID, "scope": c.Scope,
	})
	fmt.Println(string(out))
}
