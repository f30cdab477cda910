package bitbucket_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/bbemu"
	"github.com/agentscaler/agentscaler/sources/bitbucket"
)

const (
	workspace = "{0f9a6c3e-1111-4222-8333-444455556666}"
	repo      = "{7d2b1e00-aaaa-4bbb-8ccc-dddddddddddd}"
)

func setup(t *testing.T) (*bbemu.Emulator, *bitbucket.Client) {
	emu, c, _ := setupURL(t)
	return emu, c
}

func setupURL(t *testing.T) (*bbemu.Emulator, *bitbucket.Client, string) {
	t.Helper()
	emu := bbemu.New(bbemu.Options{ClientID: "consumer", ClientSecret: "consumer-secret"})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	base := srv.URL
	auth := bitbucket.ClientCredentials(base+"/site/oauth2/access_token", "consumer", "consumer-secret", nil)
	c, err := bitbucket.NewClient(auth, bitbucket.Options{URL: base, CallTimeout: 5 * time.Second,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return emu, c, base
}

func TestClientRunnersLifecycle(t *testing.T) {
	ctx := t.Context()
	for _, loc := range []bitbucket.Location{{Workspace: workspace}, {Workspace: strings.Trim(workspace, "{}"), Repository: repo}} {
		t.Run(fmt.Sprintf("repository=%t", loc.Repository != ""), func(t *testing.T) {
			emu, c := setup(t)
			var made []bitbucket.Runner
			for i := range 23 { // more than two pages of 10 would hold
				r, err := c.CreateRunner(ctx, loc, fmt.Sprintf("p-w%d", i+1), []string{"self.hosted", "linux"})
				if err != nil {
					t.Fatal(err)
				}
				if r.OAuth == nil || r.OAuth.ID == "" || r.OAuth.Secret == "" || !strings.HasPrefix(r.UUID, "{") {
					t.Fatalf("create answered %+v", r)
				}
				made = append(made, r)
			}
			list, err := c.Runners(ctx, loc)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 23 {
				t.Fatalf("listed %d runners, want 23", len(list))
			}
			for _, r := range list {
				if r.OAuth != nil {
					t.Errorf("a listed runner carries its OAuth client")
				}
				if r.State.Status != bitbucket.StatusUnregistered {
					t.Errorf("a runner that never connected is %s", r.State.Status)
				}
			}
			if err := c.SetRunnerStatus(ctx, loc, made[0].UUID, bitbucket.StatusDisabled); err != nil {
				t.Fatal(err)
			}
			got, err := c.Runner(ctx, loc, made[0].UUID)
			if err != nil || got.State.Status != bitbucket.StatusDisabled {
				t.Fatalf("after disabling: %+v, %v", got.State, err)
			}
			for _, r := range made {
				if err := c.DeleteRunner(ctx, loc, r.UUID); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.DeleteRunner(ctx, loc, made[0].UUID); err != nil {
				t.Errorf("deleting a runner already gone: %v", err)
			}
			if _, err := c.Runner(ctx, loc, made[0].UUID); !bitbucket.IsNotFound(err) {
				t.Errorf("reading a deleted runner: %v, want not found", err)
			}
			if n := len(emu.Runners()); n != 0 {
				t.Errorf("%d runners left", n)
			}
		})
	}
}

func TestClientHonoursRetryAfter(t *testing.T) {
	var waits []time.Duration
	emu2 := bbemu.New(bbemu.Options{Token: "static-token"})
	srv := httptest.NewServer(emu2)
	t.Cleanup(srv.Close)
	base := srv.URL
	c2, err := bitbucket.NewClient(bitbucket.Bearer("static-token"), bitbucket.Options{URL: base,
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	emu2.Throttle(2, 3*time.Second)
	if _, err := c2.Runners(t.Context(), bitbucket.Location{Workspace: workspace}); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 2 || waits[0] != 3*time.Second || waits[1] != 3*time.Second {
		t.Errorf("waited %v, want the server's 3s twice", waits)
	}
	if p := c2.Pace(); p <= 0 || p > 3*time.Second {
		t.Errorf("pace after Retry-After 3s: %v", p)
	}
	emu2.Throttle(10, time.Second)
	_, err = c2.Runners(t.Context(), bitbucket.Location{Workspace: workspace})
	var ae *bitbucket.APIError
	if !errors.As(err, &ae) || ae.Status != 429 {
		t.Fatalf("after the retries: %v", err)
	}
	if again, after, reason := ae.Classification(); !again || after != time.Second || reason != "throttled" {
		t.Errorf("classified %v %v %q", again, after, reason)
	}
}

func TestClientAuthFailures(t *testing.T) {
	_, _, base := setupURL(t)
	for name, auth := range map[string]bitbucket.Authorizer{
		"wrong consumer": bitbucket.ClientCredentials(base+"/site/oauth2/access_token", "consumer", "wrong", nil),
		"wrong token":    bitbucket.Bearer("nope"),
		"empty token":    bitbucket.Bearer(""),
		"app password":   bitbucket.AppPassword("me", "pw"), // the emulator takes bearer tokens only
	} {
		c, err := bitbucket.NewClient(auth, bitbucket.Options{URL: base})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Runners(t.Context(), bitbucket.Location{Workspace: workspace}); err == nil {
			t.Errorf("%s: listed runners", name)
		} else if strings.Contains(err.Error(), "consumer-secret") {
			t.Errorf("%s: the error shows the secret", name)
		}
		if s := fmt.Sprint(auth); strings.Contains(s, "pw") || strings.Contains(s, "wrong") {
			t.Errorf("%s: prints as %q", name, s)
		}
	}
}
