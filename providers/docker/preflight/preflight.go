// Package preflight checks, before a pool uses it, that an image can run
// an Azure Pipelines agent the way agentscaler starts it (docs/images.md):
// glibc, libicu, the agent and the start script where the image contract
// puts them, an ENTRYPOINT that runs its arguments or none, sh and bash on
// the PATH the image sets, no tool directory only on a shell start-up file's
// PATH, a non-root user, a work folder that user can write, and the image's
// platform matching the engine's (and the pool's capabilities).
//
// The checks read the image itself on a Docker engine, through the Docker
// provider: its configuration (image inspect), and its file system exported
// from a container that is created and never started, so that an image with
// no shell, or FROM scratch, is checked as well. Only an ENTRYPOINT is run,
// without network, to see whether it runs its arguments.
package preflight

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentscaler/agentscaler/providers/docker"
)

// Result is the outcome of one check.
type Result struct {
	Check  string // short name: glibc, libicu, user...
	OK     bool
	Detail string // what the image has
	Fix    string // what to change, when not OK
}

// Report is every check of one image.
type Report struct {
	Image    string
	ID       string
	Platform string // os/arch[/variant] of the image
	Results  []Result
	Notes    []string // what was not checked, and why
}

// Failed counts the checks that did not pass.
func (r Report) Failed() int {
	n := 0
	for _, res := range r.Results {
		if !res.OK {
			n++
		}
	}
	return n
}

// Result returns the result of the named check.
func (r Report) Result(check string) (Result, bool) {
	i := slices.IndexFunc(r.Results, func(res Result) bool { return res.Check == check })
	if i < 0 {
		return Result{}, false
	}
	return r.Results[i], true
}

// Write prints the report as a table: ✔ or ✘, the check, what was found,
// and under each ✘ the fix.
func (r Report) Write(w io.Writer) error {
	fmt.Fprintf(w, "image %s", r.Image)
	if r.ID != "" {
		fmt.Fprintf(w, " (%s, %s)", shortID(r.ID), r.Platform)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, res := range r.Results {
		mark := "✔"
		if !res.OK {
			mark = "✘"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, res.Check, res.Detail)
		if !res.OK && res.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", res.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	var err error
	if f := r.Failed(); f > 0 {
		_, err = fmt.Fprintf(w, "%d of %d checks failed\n", f, len(r.Results))
	} else {
		_, err = fmt.Fprintf(w, "all %d checks passed\n", len(r.Results))
	}
	return err
}

func shortID(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 && len(id) > i+13 {
		return id[:i+13]
	}
	return id
}

// Options say what the image is checked against.
type Options struct {
	// Capabilities are the pool's: Agent.OS and Agent.OSArchitecture, when
	// set, must match the image's platform too.
	Capabilities map[string]string
	// Work is the work folder the pool passes as AZP_WORK; empty means the
	// default, _work (under the agent).
	Work string
	// Mounts are the container paths the pool mounts: a work folder on one
	// is as writable as the mount, which the image does not decide.
	Mounts []string
	// EntrypointTimeout bounds the run that tests an ENTRYPOINT. Default 30s.
	EntrypointTimeout time.Duration
}

// The image contract (docs/images.md, infra/images/linux).
const (
	DefaultAgentHome = "/azp/agent"
	DefaultWork      = "_work"
	// dockerPath is the PATH the engine gives a container whose image sets none.
	dockerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Check pulls ref as the provider's pull policy says (with its registry
// credentials), and checks it. The error is for what kept the checks from
// running (no engine, no image); what the image lacks is in the report.
func Check(ctx context.Context, eng *docker.Provider, ref string, opts Options) (Report, error) {
	rep := Report{Image: ref}
	if err := eng.Prepull(ctx, ref); err != nil {
		return rep, err
	}
	cfg, err := eng.InspectImage(ctx, ref)
	if err != nil {
		return rep, err
	}
	rep.ID = cfg.ID
	rep.Platform = platformOf(cfg.OS, cfg.Architecture, cfg.Variant)
	engOS, engArch, err := eng.Platform(ctx)
	if err != nil {
		return rep, err
	}
	platform := checkPlatform(cfg, engOS, engArch, opts.Capabilities)
	rep.Results = append(rep.Results, platform)
	if cfg.OS != "linux" {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the other checks are for Linux images; this one is for %s", cfg.OS))
		return rep, nil
	}
	c := &checker{cfg: cfg, env: envMap(cfg.Env), opts: opts}
	rc, err := eng.ExportImage(ctx, ref)
	if err != nil {
		return rep, err
	}
	c.t, err = readTree(rc, keepWhole)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("exporting the image's file system: %w", cerr)
	}
	if err != nil {
		return rep, err
	}
	c.user = c.resolveUser()
	rep.Results = append(rep.Results,
		c.glibc(), c.libicu(), c.agent(), c.start(),
		c.entrypoint(ctx, eng, ref, cfg.OS == engOS && cfg.Architecture == engArch),
		c.shells(), c.startupPath(), c.userCheck(), c.work())
	return rep, nil
}

func platformOf(os, arch, variant string) string {
	if variant != "" {
		return os + "/" + arch + "/" + variant
	}
	return os + "/" + arch
}

// Azure DevOps' names of systems and architectures (Agent.OS,
// Agent.OSArchitecture), as images name them.
var (
	agentOS   = map[string]string{"linux": "linux", "windows_nt": "windows", "darwin": "darwin"}
	agentArch = map[string]string{"x64": "amd64", "arm64": "arm64", "arm": "arm", "x86": "386"}
)

func checkPlatform(cfg docker.ImageConfig, engOS, engArch string, caps map[string]string) Result {
	r := Result{Check: "platform", OK: true}
	img := platformOf(cfg.OS, cfg.Architecture, cfg.Variant)
	var wrong []string
	if cfg.OS != engOS || cfg.Architecture != engArch {
		wrong = append(wrong, fmt.Sprintf("the engine runs %s/%s", engOS, engArch))
	}
	for capName, names := range map[string]map[string]string{"Agent.OS": agentOS, "Agent.OSArchitecture": agentArch} {
		v, ok := capValue(caps, capName)
		if !ok {
			continue
		}
		want, known := names[strings.ToLower(v)]
		if got := cmp.Or(map[string]string{"Agent.OS": cfg.OS, "Agent.OSArchitecture": cfg.Architecture}[capName], "?"); !known || want != got {
			wrong = append(wrong, fmt.Sprintf("the pool's capability %s is %s", capName, v))
		}
	}
	slices.Sort(wrong)
	if len(wrong) == 0 {
		r.Detail = img + ", as the engine runs"
		return r
	}
	r.OK = false
	r.Detail = img + ", but " + strings.Join(wrong, " and ")
	r.Fix = fmt.Sprintf("build the image for %s/%s (docker buildx build --platform %s/%s), or run the pool on an engine of the image's platform and set its capabilities to match", engOS, engArch, engOS, engArch)
	return r
}

// capValue looks a capability up by name, ignoring case as Azure DevOps does.
func capValue(caps map[string]string, name string) (string, bool) {
	for k, v := range caps {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// keepWhole selects the files the checks read: accounts, and the shell
// start-up files that may set PATH.
func keepWhole(name string) bool {
	switch name {
	case "/etc/passwd", "/etc/group", "/etc/profile", "/etc/bash.bashrc", "/etc/environment":
		return true
	}
	if path.Dir(name) == "/etc/profile.d" {
		return true
	}
	dir, base := path.Split(name)
	return slices.Contains(startupFiles, base) && (dir == "/root/" || path.Dir(path.Dir(name)) == "/home")
}

// startupFiles are the per-user files a login or interactive shell reads.
var startupFiles = []string{".bashrc", ".profile", ".bash_profile", ".bash_login"}

// user is the account containers of the image run as.
type user struct {
	spec     string // USER as written
	uid, gid int
	groups   []int // supplementary, from /etc/group
	home     string
	err      string // why the user cannot be resolved
}

func (c *checker) resolveUser() user {
	u := user{spec: c.cfg.User, home: "/root"}
	name, group, hasGroup := strings.Cut(c.cfg.User, ":")
	if name == "" {
		name = "0"
	}
	passwd := records(c.t, "/etc/passwd")
	var rec []string
	if id, err := strconv.Atoi(name); err == nil {
		u.uid = id // and group 0, as the engine gives a uid without an entry
		for _, r := range passwd {
			if len(r) > 5 && r[2] == name {
				rec = r
				break
			}
		}
	} else {
		for _, r := range passwd {
			if len(r) > 5 && r[0] == name {
				rec = r
				break
			}
		}
		if rec == nil {
			u.err = fmt.Sprintf("USER %s is not in the image's /etc/passwd, so the engine cannot start its containers", name)
			return u
		}
		u.uid, _ = strconv.Atoi(rec[2])
	}
	if rec != nil {
		u.gid, _ = strconv.Atoi(rec[3])
		u.home = rec[5]
		name = rec[0]
	} else if u.uid != 0 {
		u.home = "/"
	}
	if hasGroup {
		if id, err := strconv.Atoi(group); err == nil {
			u.gid = id
		} else if i := slices.IndexFunc(records(c.t, "/etc/group"), func(r []string) bool { return len(r) > 2 && r[0] == group }); i >= 0 {
			u.gid, _ = strconv.Atoi(records(c.t, "/etc/group")[i][2])
		} else {
			u.err = fmt.Sprintf("USER %s names group %s, which is not in the image's /etc/group", c.cfg.User, group)
		}
	}
	for _, r := range records(c.t, "/etc/group") {
		if len(r) > 3 && slices.Contains(strings.Split(r[3], ","), name) {
			if gid, err := strconv.Atoi(r[2]); err == nil {
				u.groups = append(u.groups, gid)
			}
		}
	}
	return u
}

// records reads a colon-separated account file of the image.
func records(t tree, name string) [][]string {
	_, n := t.file(name)
	if n == nil {
		return nil
	}
	var out [][]string
	for line := range strings.Lines(string(n.data)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, strings.Split(line, ":"))
		}
	}
	return out
}

// canWrite reports whether u may create files in the directory node n.
func (u user) canWrite(n *node) bool {
	perm := n.mode.Perm()
	switch {
	case u.uid == 0:
		return true
	case n.uid == u.uid:
		return perm&0o200 != 0
	case n.gid == u.gid || slices.Contains(u.groups, n.gid):
		return perm&0o020 != 0
	}
	return perm&0o002 != 0
}
