package bitbucket

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TokenURL is Bitbucket's OAuth token endpoint.
const TokenURL = "https://bitbucket.org/site/oauth2/access_token"

// Authorizer supplies the Authorization header of Bitbucket calls. Its
// String never shows the secret.
type Authorizer interface {
	Authorization(ctx context.Context) (string, error)
}

// Bearer authorizes with an access token (a workspace, repository or
// personal API token).
func Bearer(token string) Authorizer { return static{"Bearer " + token, token == "", "bearer"} }

// AppPassword authorizes with a user name and an app password.
func AppPassword(user, password string) Authorizer {
	return static{"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password)), user == "" || password == "", "app password"}
}

type static struct {
	header string
	empty  bool
	kind   string
}

func (s static) Authorization(context.Context) (string, error) {
	if s.empty {
		return "", fmt.Errorf("bitbucket: the %s is empty", s.kind)
	}
	return s.header, nil
}

func (s static) String() string { return "bitbucket." + s.kind + "(redacted)" }

// ClientCredentials authorizes with an OAuth consumer's key and secret,
// exchanged at tokenURL for an access token that is cached until a minute
// before it expires.
func ClientCredentials(tokenURL, id, secret string, hc *http.Client) Authorizer {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &oauth{url: tokenURL, id: id, secret: secret, hc: hc, now: time.Now}
}

type oauth struct {
	url, id, secret string
	hc              *http.Client
	now             func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

func (o *oauth) String() string { return "bitbucket.oauth(redacted)" }

func (o *oauth) Authorization(ctx context.Context) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.token != "" && o.now().Before(o.expires) {
		return "Bearer " + o.token, nil
	}
	if o.id == "" || o.secret == "" {
		return "", errors.New("bitbucket: the OAuth consumer key or secret is empty")
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("bitbucket: token request: %w", err)
	}
	req.SetBasicAuth(o.id, o.secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := o.hc.Do(req)
	if err != nil {
		return "", &APIError{Endpoint: EndpointToken, Err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", apiError(EndpointToken, resp, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return "", errors.New("bitbucket: the token endpoint answered without an access token")
	}
	o.token = tok.AccessToken
	o.expires = o.now().Add(time.Duration(tok.ExpiresIn)*time.Second - time.Minute)
	return "Bearer " + o.token, nil
}
