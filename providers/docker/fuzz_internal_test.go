package docker

import (
	"encoding/base64"
	"testing"
)

// FuzzDockerConfig takes a Docker client config.json as a user writes it (or
// as docker login leaves it). `go test` runs the seeds; `go test
// -fuzz=FuzzDockerConfig` explores. No input may panic, and every entry
// read holds credentials and is keyed as a reference's registry is looked up.
func FuzzDockerConfig(f *testing.F) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{
		`{"auths": {"https://index.docker.io/v1/": {"auth": "` + enc("robot:hunter2hunter2") + `"}}}`,
		`{"auths": {"registry.example.com:5000": {"username": "u", "password": "p"}, "ghcr.io": {"identitytoken": "tok"}}, "credsStore": "desktop"}`,
		`{"auths": {"r.example.com": {"auth": "%%%"}}}`,
		`{"auths": {"r.example.com": {"auth": "` + enc("no-colon") + `"}}}`,
		`{"credsStore": "desktop", "auths": {"r.example.com": {}}}`,
		`{"credHelpers": {"gcr.io": "gcloud"}}`,
		`not json`, `{}`, `{"auths": null}`, `{"auths": {"": {"auth": "` + enc(":") + `"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		auths, err := parseDockerConfig("config.json", data)
		if err != nil {
			if len(auths) != 0 {
				t.Errorf("entries returned with the error %v", err)
			}
			if len(err.Error()) > 4*len(data)+1024 {
				t.Errorf("an error of %d bytes from %d bytes of input", len(err.Error()), len(data))
			}
			return
		}
		if len(auths) == 0 {
			t.Error("no error, and no entry")
		}
		for key, ac := range auths {
			if registryKey(key) != key {
				t.Errorf("entry %q is not keyed as a registry is looked up (%q)", key, registryKey(key))
			}
			if ac.Username == "" && ac.IdentityToken == "" {
				t.Errorf("entry %q carries no credentials", key)
			}
		}
	})
}
