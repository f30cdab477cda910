package docker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
)

// maxDockerConfig bounds the config file read: it holds a few credentials.
const maxDockerConfig = 1 << 20

// registryAuth returns the X-Registry-Auth value for pulling ref: the
// configured credentials, or the config file's entry for ref's registry,
// or "" for an anonymous pull.
func (p *Provider) registryAuth(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	host := reference.Domain(named)
	var ac registry.AuthConfig
	switch {
	case p.opts.Auth != nil:
		ac = registry.AuthConfig{Username: p.opts.Auth.Username, Password: p.opts.Auth.Password, ServerAddress: host}
	case p.opts.DockerConfig != "":
		auths, err := readDockerConfig(p.opts.DockerConfig)
		if err != nil {
			return "", fmt.Errorf("registry config file: %w", err)
		}
		var ok bool
		if ac, ok = auths[registryKey(host)]; !ok {
			return "", nil
		}
		ac.ServerAddress = host
	default:
		return "", nil
	}
	return registry.EncodeAuthConfig(ac)
}

// dockerConfigFile is the part of a .docker/config.json this package reads.
type dockerConfigFile struct {
	Auths map[string]struct {
		Auth          string `json:"auth"` // base64 of user:password
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
}

// readDockerConfig reads the basic-auth entries of a Docker client config
// file, keyed by registryKey. Credential helpers (credsStore, credHelpers)
// are not run. Errors name the entry, never its content.
func readDockerConfig(path string) (map[string]registry.AuthConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDockerConfig+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxDockerConfig {
		return nil, fmt.Errorf("%s: larger than %d bytes; is it a Docker config.json?", path, maxDockerConfig)
	}
	return parseDockerConfig(path, data)
}

// parseDockerConfig reads the entries of readDockerConfig from the file's
// content; path only names the file in errors.
func parseDockerConfig(path string, data []byte) (map[string]registry.AuthConfig, error) {
	var file dockerConfigFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%s: not a Docker config.json: %w", path, err)
	}
	out := make(map[string]registry.AuthConfig, len(file.Auths))
	for server, e := range file.Auths {
		ac := registry.AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("%s: auths[%q].auth is not base64; it must be base64 of user:password", path, server)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("%s: auths[%q].auth does not decode to user:password", path, server)
			}
			ac.Username, ac.Password = user, pass
		}
		if ac.Username == "" && ac.IdentityToken == "" {
			continue // an entry a credential helper holds
		}
		out[registryKey(server)] = ac
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": has no auths entry with credentials; credential helpers (credsStore, credHelpers) are not run, so write the entries with `docker login` and credsStore unset")
	}
	return out, nil
}

// registryKey reduces a registry address as config files write it
// (https://index.docker.io/v1/, registry.example.com:5000) to the host a
// reference names, and Docker Hub's aliases to docker.io.
func registryKey(server string) string {
	s := strings.ToLower(server)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return s
}
