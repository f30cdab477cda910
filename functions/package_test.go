//go:build linux

package functions

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

// TestPackage runs `make package` into a temporary directory and checks what
// would be deployed: the function app folder and its zip, run as the
// Functions host would run it, and the Lambda zips.
func TestPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	dist := t.TempDir()
	build := exec.Command("make", "-C", "..", "package", "DIST="+dist)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}

	app := filepath.Join(dist, "functionapp")
	functions, err := filepath.Glob(filepath.Join("*", "function.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Each packaged file and the source it is copied from.
	sources := map[string]string{"host.json": filepath.Join("..", "host.json"), "local.settings.json.example": "local.settings.json.example"}
	want := map[string]fs.FileMode{"agentscaler": 0o755}
	for _, f := range functions {
		sources[filepath.ToSlash(f)] = f
	}
	for name := range sources {
		want[name] = 0o644
	}
	if got := treeModes(t, app); !maps.Equal(got, want) {
		t.Errorf("function app files %v, want %v", got, want)
	}
	for name, src := range sources {
		if !bytes.Equal(readFile(t, filepath.Join(app, name)), readFile(t, src)) {
			t.Errorf("%s differs from its source %s", name, src)
		}
	}
	wantELF(t, filepath.Join(app, "agentscaler"), elf.EM_X86_64)
	zipMatchesTree(t, filepath.Join(dist, "functionapp.zip"), app)
	runFunctionApp(t, app)

	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		t.Run("lambda-"+arch, func(t *testing.T) {
			dir := filepath.Join(dist, "lambda-"+arch)
			if got := treeModes(t, dir); !maps.Equal(got, map[string]fs.FileMode{"bootstrap": 0o755}) {
				t.Errorf("lambda-%s holds %v, want bootstrap 0755 alone", arch, got)
			}
			wantELF(t, filepath.Join(dir, "bootstrap"), machine)
			zipMatchesTree(t, filepath.Join(dist, "lambda-"+arch+".zip"), dir)
		})
	}
}

// TestLocalSettingsExample: the example's values are a valid environment
// configuration once the secrets are filled in, for the custom handler.
func TestLocalSettingsExample(t *testing.T) {
	var s struct {
		IsEncrypted bool
		Values      map[string]string
	}
	if err := json.Unmarshal(readFile(t, "local.settings.json.example"), &s); err != nil {
		t.Fatal(err)
	}
	if s.IsEncrypted || s.Values["FUNCTIONS_WORKER_RUNTIME"] != "custom" {
		t.Errorf("IsEncrypted %v, FUNCTIONS_WORKER_RUNTIME %q; want false and custom", s.IsEncrypted, s.Values["FUNCTIONS_WORKER_RUNTIME"])
	}
	for _, secret := range []string{config.EnvToken, config.EnvWebhookPassword} {
		if v, ok := s.Values[secret]; !ok || v != "" {
			t.Errorf("%s = %q: the example must name it and leave it empty", secret, v)
		}
	}
	filled := func(k string) string {
		if k == config.EnvToken || k == config.EnvWebhookPassword {
			return "filled-in"
		}
		return s.Values[k]
	}
	if _, err := config.FromEnv(filled); err != nil {
		t.Errorf("the example's values do not configure the autoscaler: %v", err)
	}
}

// runFunctionApp starts the packaged binary as the Functions host does (from
// the app folder, with host.json's command line and a port in
// FUNCTIONS_CUSTOMHANDLER_PORT), then sends each function.json trigger the
// request the host would forward or post.
func runFunctionApp(t *testing.T, app string) {
	t.Helper()
	var host hostJSON
	readJSON(t, filepath.Join(app, "host.json"), &host)
	emu := adoemu.New(adoemu.Options{PAT: "package-test-pat"})
	if _, err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	emu.AddPool("Default")

	port := freePort(t)
	d := host.CustomHandler.Description
	cmd := exec.Command(filepath.Join(app, d.DefaultExecutablePath), d.Arguments...)
	cmd.Dir = app
	cmd.Env = []string{
		PortEnv + "=" + port,
		"AZP_URL=" + emu.OrgURL(), "AZP_POOL=Default", "AZP_TOKEN=package-test-pat",
		"AGENTSCALER_PROVIDER=memory", "AGENTSCALER_WEBHOOK_PASSWORD=package-test-hook",
	}
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	base := "http://" + net.JoinHostPort("127.0.0.1", port)
	client := &http.Client{Timeout: 30 * time.Second}
	send := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for status, _ := send("GET", "/api/healthz", ""); status != http.StatusOK; status, _ = send("GET", "/api/healthz", "") {
		if time.Now().After(deadline) {
			t.Fatalf("the packaged app never answered on port %s:\n%s", port, out)
		}
		time.Sleep(20 * time.Millisecond)
	}

	prefix := *host.Extensions.HTTP.RoutePrefix
	dirs, _ := filepath.Glob(filepath.Join(app, "*", "function.json"))
	for _, f := range dirs {
		name := filepath.Base(filepath.Dir(f))
		var fn struct{ Bindings []binding }
		readJSON(t, f, &fn)
		for _, b := range fn.Bindings {
			switch b.Type {
			case "httpTrigger":
				path := "/" + prefix + "/" + strings.ReplaceAll(b.Route, "{source}", "azuredevops")
				for _, m := range b.Methods {
					status, body := send(strings.ToUpper(m), path, "")
					if status == 0 || status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
						t.Errorf("function %s: %s %s = %d %q: the packaged app does not serve it", name, m, path, status, body)
					}
				}
			case "timerTrigger":
				status, body := send("POST", "/"+name, strings.Replace(timerInvocation, `"timer"`, fmt.Sprintf("%q", b.Name), 1))
				if status != http.StatusOK || !strings.Contains(body, `"pool default: ok"`) {
					t.Errorf("function %s: timer invocation = %d %s", name, status, body)
				}
			}
		}
	}
	if emu.Calls()[adoemu.EndpointJobRequests] == 0 {
		t.Error("the timer invocation did not reach Azure DevOps")
	}
}

// treeModes lists the regular files under dir with their permissions.
func treeModes(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// zipMatchesTree checks that the zip holds exactly the folder: same names,
// permissions (as Unix external attributes) and contents.
func zipMatchesTree(t *testing.T, zipPath, dir string) {
	t.Helper()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got := map[string]fs.FileMode{}
	for _, f := range zr.File {
		if f.CreatorVersion>>8 != 3 {
			t.Errorf("%s: %s has no Unix attributes", filepath.Base(zipPath), f.Name)
		}
		got[f.Name] = fs.FileMode(f.ExternalAttrs >> 16).Perm()
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, readFile(t, filepath.Join(dir, f.Name))) {
			t.Errorf("%s: %s differs from the folder (%v)", filepath.Base(zipPath), f.Name, err)
		}
	}
	want := treeModes(t, dir)
	for k, v := range want {
		want[k] = v.Perm()
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", filepath.Base(zipPath), got, want)
	}
}

func wantELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != machine || f.Type != elf.ET_EXEC {
		t.Errorf("%s: %s %s, want an %s executable", path, f.Type, f.Machine, machine)
	}
	if f.Section(".interp") != nil {
		t.Errorf("%s is dynamically linked; CGO must be off", path)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s keeps its symbol table; build with -s -w", path)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
