// Get a kubemint access token with golang.org/x/oauth2/clientcredentials, its defaults
// unchanged (AuthStyleAutoDetect: HTTP Basic first, the form if the server refuses it).
//
// Settings from the environment: KUBEMINT_TOKEN_URL, KUBEMINT_CLIENT_ID,
// KUBEMINT_CLIENT_SECRET, KUBEMINT_SCOPE (optional, space-separated). Prints
// {"access_token": …, "token_type": …, "expiry": …}, or one line `token request failed: …` on
// stderr and exits 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2/clientcredentials"
)

func main() {
	config := clientcredentials.Config{
		ClientID:     os.Getenv("KUBEMINT_CLIENT_ID"),
		ClientSecret: os.Getenv("KUBEMINT_CLIENT_SECRET"),
		TokenURL:     os.Getenv("KUBEMINT_TOKEN_URL"),
		Scopes:       strings.Fields(os.Getenv("KUBEMINT_SCOPE")),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	token, err := config.Token(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "token request failed: %v\n", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]any{
		"access_token": token.AccessToken,
		"token_type":   token.TokenType,
		"expiry":       token.Expiry.Unix(),
		"scope":        token.Extra("scope"),
	})
	fmt.Println(string(out))
}
