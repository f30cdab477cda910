package preflight

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/providers/docker"
)

// checker holds what the checks of one image read.
type checker struct {
	cfg  docker.ImageConfig
	env  map[string]string
	opts Options
	t    tree
	user user
}

func pass(check, detail string) Result { return Result{Check: check, OK: true, Detail: detail} }

func fail(check, detail, fix string) Result {
	return Result{Check: check, Detail: detail, Fix: fix}
}

const glibcFix = "build FROM a glibc distribution (Debian, Ubuntu, RHEL and the like): the agent's Node.js, " +
	"the tasks and the .NET tools they download are built for glibc"

func (c *checker) glibc() Result {
	libc := c.t.libraries(func(b string) bool { return b == "libc.so.6" })
	loader := c.t.libraries(func(b string) bool { return strings.HasPrefix(b, "ld-linux") && strings.Contains(b, ".so") })
	musl := c.t.libraries(func(b string) bool { return strings.HasPrefix(b, "ld-musl-") || strings.HasPrefix(b, "libc.musl-") })
	slices.Sort(libc)
	slices.Sort(loader)
	slices.Sort(musl)
	switch {
	case len(libc) > 0 && len(loader) > 0:
		return pass("glibc", "glibc: "+libc[0]+" and its loader "+loader[0])
	case len(musl) > 0:
		return fail("glibc", "musl libc ("+musl[0]+"), as in Alpine; no glibc", glibcFix)
	}
	return fail("glibc", "no C library (no libc.so.6, no dynamic loader): a static or FROM scratch image", glibcFix)
}

func (c *checker) libicu() Result {
	if v := c.env["DOTNET_SYSTEM_GLOBALIZATION_INVARIANT"]; v == "1" || strings.EqualFold(v, "true") {
		return pass("libicu", "none needed: DOTNET_SYSTEM_GLOBALIZATION_INVARIANT="+v+" (culture-specific formatting is off)")
	}
	libs := c.t.libraries(func(b string) bool { return strings.HasPrefix(b, "libicuuc.so") })
	if len(libs) > 0 {
		slices.Sort(libs)
		return pass("libicu", libs[0])
	}
	return fail("libicu", "no libicuuc.so in the library directories, and DOTNET_SYSTEM_GLOBALIZATION_INVARIANT is not set",
		"install libicu (Debian libicu72, Ubuntu 24.04 libicu74, RHEL libicu), which .NET and so the agent needs; "+
			"or set ENV DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1, knowing culture-specific formatting is lost")
}

// agentHome is where the agent is: AZP_AGENT_HOME in the image, else the
// contract's /azp/agent.
func (c *checker) agentHome() string {
	if h := c.env["AZP_AGENT_HOME"]; h != "" {
		return h
	}
	return DefaultAgentHome
}

func (c *checker) agent() Result {
	home := c.agentHome()
	var missing []string
	for _, f := range []string{"config.sh", "run.sh", "bin/Agent.Listener"} {
		if _, n := c.t.file(path.Join(home, f)); n == nil || n.mode&0o111 == 0 {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return pass("agent", home+": config.sh, run.sh and bin/Agent.Listener")
	}
	return fail("agent", fmt.Sprintf("%s lacks %s (or they are not executable)", home, strings.Join(missing, ", ")),
		"extract the agent (vsts-agent-linux-<arch>-<version>.tar.gz) into "+DefaultAgentHome+
			" at build time, as infra/images/linux/Dockerfile does, or set ENV AZP_AGENT_HOME to where it is")
}

// command is what a container of the image runs: ENTRYPOINT then CMD.
func (c *checker) command() []string {
	return append(slices.Clone(c.cfg.Entrypoint), c.cfg.Cmd...)
}

// pathDirs is the PATH containers of the image get.
func (c *checker) pathDirs() []string {
	p, ok := c.env["PATH"]
	if !ok {
		p = dockerPath
	}
	return strings.Split(p, ":")
}

// which finds prog as execvp would: a name with a slash as it is, else in
// each PATH directory. It returns the path found and the file's node.
func (c *checker) which(prog string) (string, *node) {
	if strings.Contains(prog, "/") {
		if !path.IsAbs(prog) {
			prog = path.Join(c.workingDir(), prog)
		}
		if _, n := c.t.file(prog); n != nil && n.mode&0o111 != 0 {
			return prog, n
		}
		return "", nil
	}
	for _, d := range c.pathDirs() {
		if d == "" {
			continue
		}
		p := path.Join(d, prog)
		if _, n := c.t.file(p); n != nil && n.mode&0o111 != 0 {
			return p, n
		}
	}
	return "", nil
}

func (c *checker) workingDir() string {
	if c.cfg.WorkingDir != "" {
		return c.cfg.WorkingDir
	}
	return "/"
}

const startFix = `start the agent from CMD ["/azp/start.sh"] (infra/images/linux/start.sh registers the agent, ` +
	`runs it for one job and unregisters it), copied into the image executable`

func (c *checker) start() Result {
	cmd := c.command()
	if len(cmd) == 0 {
		return fail("start", "the image has no CMD nor ENTRYPOINT", startFix)
	}
	what := fmt.Sprintf("CMD %q", c.cfg.Cmd)
	if len(c.cfg.Entrypoint) > 0 {
		what = fmt.Sprintf("ENTRYPOINT %q", c.cfg.Entrypoint)
	}
	found, n := c.which(cmd[0])
	if n == nil {
		return fail("start", fmt.Sprintf("%s: %s is not an executable file in the image", what, cmd[0]), startFix)
	}
	interp, ok := interpreter(n.data)
	if !ok {
		return pass("start", fmt.Sprintf("%s: %s", what, found))
	}
	prog := interp[0]
	if path.Base(prog) == "env" && len(interp) > 1 {
		if _, n := c.which(prog); n == nil {
			return fail("start", fmt.Sprintf("%s: %s starts with #!%s, which the image lacks", what, found, strings.Join(interp, " ")), startFix)
		}
		prog = interp[1]
	}
	if p, n := c.which(prog); n == nil {
		return fail("start", fmt.Sprintf("%s: %s starts with #!%s, and %s is not in the image (or not on PATH)", what, found, strings.Join(interp, " "), prog),
			"install "+path.Base(prog)+" in the image, or change the script's #! line to an interpreter the image has")
	} else {
		return pass("start", fmt.Sprintf("%s: %s, run by %s", what, found, p))
	}
}

// interpreter reads a #! line: the program and its argument.
func interpreter(head []byte) ([]string, bool) {
	s, ok := strings.CutPrefix(string(head), "#!")
	if !ok {
		return nil, false
	}
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	return f, len(f) > 0
}

const entrypointFix = `remove the ENTRYPOINT and start with CMD (the agent runs its own command in a job container, and ` +
	`"docker run IMAGE bash" stays usable), or end the entrypoint script with exec "$@"`

// entrypoint checks that an ENTRYPOINT runs its arguments, by running the
// image with a command that prints a marker: the one check that runs the
// image. canRun is false when the image is for another platform.
func (c *checker) entrypoint(ctx context.Context, eng *docker.Provider, ref string, canRun bool) Result {
	ep := c.cfg.Entrypoint
	if len(ep) == 0 {
		return pass("entrypoint", "none: containers run their command as given")
	}
	what := fmt.Sprintf("ENTRYPOINT %q", ep)
	if !canRun {
		return fail("entrypoint", what+": not tested, the engine cannot run an image of another platform", entrypointFix)
	}
	sh, n := c.which("sh")
	if n == nil {
		return fail("entrypoint", what+": not tested, the image has no sh to run as its argument", entrypointFix)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	marker := "agentscaler-preflight-" + hex.EncodeToString(b)
	timeout := c.opts.EntrypointTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := eng.RunImage(rctx, ref, []string{sh, "-c", "echo " + marker})
	switch {
	case err != nil && rctx.Err() != nil && ctx.Err() == nil:
		return fail("entrypoint", fmt.Sprintf("%s with the arguments %s -c 'echo …' did not end within %v", what, sh, timeout), entrypointFix)
	case err != nil:
		return fail("entrypoint", fmt.Sprintf("%s: could not run it: %v", what, err), entrypointFix)
	case strings.Contains(res.Output, marker) && res.ExitCode == 0:
		return pass("entrypoint", what+" runs its arguments")
	}
	out := strings.TrimSpace(res.Output)
	if len(out) > 200 {
		out = out[:200] + "…"
	}
	return fail("entrypoint", fmt.Sprintf("%s does not run its arguments: given %s -c 'echo …' it exited %d without running it (output %q)", what, sh, res.ExitCode, out), entrypointFix)
}

func (c *checker) shells() Result {
	var found, missing []string
	for _, prog := range []string{"sh", "bash"} {
		if p, n := c.which(prog); n != nil {
			found = append(found, p)
		} else {
			missing = append(missing, prog)
		}
	}
	if len(missing) == 0 {
		return pass("shell", strings.Join(found, " and ")+" on PATH")
	}
	return fail("shell", fmt.Sprintf("no %s on PATH=%s", strings.Join(missing, " nor "), strings.Join(c.pathDirs(), ":")),
		"install bash (the agent's config.sh and run.sh, the start script and script steps run in it), "+
			"or add its directory to PATH with ENV PATH=/its/dir:$PATH")
}

// pathAssign matches PATH=... in a shell start-up file or /etc/environment.
var pathAssign = regexp.MustCompile(`(?:^|[\s;])(?:export\s+)?PATH=("[^"]*"|'[^']*'|[^\s;]+)`)

// pathManagers are scripts that, sourced from a start-up file, put tools on
// PATH: version managers' init scripts.
var pathManagers = []string{"nvm.sh", "sdkman-init.sh", "asdf.sh", "conda.sh", ".cargo/env"}

// startupPath looks for tool directories that only a shell start-up file
// puts on PATH: the agent and docker exec start no login or interactive
// shell, so they never read those files.
func (c *checker) startupPath() Result {
	onPath := map[string]bool{}
	for _, d := range c.pathDirs() {
		onPath[path.Clean(d)] = true
	}
	var hidden []string
	var files []string
	for name := range c.t {
		if keepWhole(name) && name != "/etc/passwd" && name != "/etc/group" {
			files = append(files, name)
		}
	}
	slices.Sort(files)
	for _, f := range files {
		_, n := c.t.file(f)
		if n == nil {
			continue
		}
		home := c.user.home
		if strings.HasPrefix(f, "/root/") || strings.HasPrefix(f, "/home/") {
			home = path.Dir(f)
		}
		text := string(n.data)
		for _, m := range pathAssign.FindAllStringSubmatch(text, -1) {
			for _, d := range strings.Split(strings.Trim(m[1], `"'`), ":") {
				d = expandHome(d, home)
				if d == "" || strings.Contains(d, "$") || onPath[path.Clean(d)] || !c.t.hasExecutables(d) {
					continue
				}
				hidden = append(hidden, fmt.Sprintf("%s (PATH in %s)", d, f))
			}
		}
		for _, pm := range pathManagers {
			if strings.Contains(text, pm) {
				hidden = append(hidden, fmt.Sprintf("what %s adds (sourced in %s)", pm, f))
			}
		}
	}
	if len(hidden) == 0 {
		return pass("PATH", "tools come from ENV PATH alone; no shell start-up file adds a tool directory")
	}
	return fail("PATH", "only shell start-up files put these on PATH: "+strings.Join(slices.Compact(hidden), "; "),
		"set them in the Dockerfile with ENV PATH=/the/dir:$PATH: the agent and docker exec read no .bashrc, .profile or /etc/environment")
}

func expandHome(d, home string) string {
	d = strings.TrimSpace(d)
	for _, h := range []string{"$HOME", "${HOME}", "~"} {
		if rest, ok := strings.CutPrefix(d, h); ok && (rest == "" || rest[0] == '/') {
			return home + rest
		}
	}
	return d
}

const userFix = "add a user and end the Dockerfile with a numeric USER, e.g. USER 1001:1001 " +
	"(the agent refuses root unless AGENT_ALLOW_RUNASROOT is set, and Kubernetes' runAsNonRoot needs a number)"

func (c *checker) userCheck() Result {
	u := c.user
	switch {
	case u.err != "":
		return fail("user", u.err, "add the user to the image (useradd), or name an existing one in USER")
	case u.uid == 0 && u.spec == "":
		return fail("user", "root: the image sets no USER", userFix)
	case u.uid == 0:
		return fail("user", "root: USER "+u.spec, userFix)
	}
	name, _, _ := strings.Cut(u.spec, ":")
	if _, err := strconv.Atoi(name); err != nil {
		return pass("user", fmt.Sprintf("USER %s: uid %d (a numeric USER %d:%d would let Kubernetes' runAsNonRoot verify it)", u.spec, u.uid, u.uid, u.gid))
	}
	return pass("user", fmt.Sprintf("USER %s: uid %d, gid %d", u.spec, u.uid, u.gid))
}

// work checks that the image's user can create or write the agent's work
// folder: AZP_WORK, relative to the agent's home unless absolute.
func (c *checker) work() Result {
	w := c.opts.Work
	if w == "" {
		w = DefaultWork
	}
	dir := w
	if !path.IsAbs(dir) {
		dir = path.Join(c.agentHome(), dir)
	}
	for _, m := range c.opts.Mounts {
		if m = path.Clean(m); dir == m || strings.HasPrefix(dir, m+"/") {
			return pass("work", fmt.Sprintf("%s is on the pool's mount at %s: writable as that mount is", dir, m))
		}
	}
	// The folder, or the nearest directory above it that exists, where it
	// would be created.
	for p := dir; ; p = path.Dir(p) {
		real, n := c.t.lookup(p)
		if n == nil {
			if p == "/" {
				break
			}
			continue
		}
		who := fmt.Sprintf("uid %d", c.user.uid)
		owner := fmt.Sprintf("owner %d:%d, mode %04o", n.uid, n.gid, n.mode.Perm())
		switch {
		case !n.mode.IsDir():
			return fail("work", fmt.Sprintf("%s cannot be created: %s is not a directory", dir, real), workFix(dir))
		case !c.user.canWrite(n) && p == dir:
			return fail("work", fmt.Sprintf("%s exists and %s cannot write it (%s)", dir, who, owner), workFix(dir))
		case !c.user.canWrite(n):
			return fail("work", fmt.Sprintf("%s cannot be created: %s cannot write %s (%s)", dir, who, real, owner), workFix(dir))
		case p == dir:
			return pass("work", fmt.Sprintf("%s is writable by %s (%s)", dir, who, owner))
		}
		return pass("work", fmt.Sprintf("%s can be created by %s in %s (%s)", dir, who, real, owner))
	}
	return fail("work", dir+": no directory above it in the image", workFix(dir))
}

func workFix(dir string) string {
	return fmt.Sprintf("give the user the folder at build time (RUN install -d -o 1001 -g 1001 %s, or chown -R the agent directory), "+
		"or mount a writable volume there (docker.mounts)", dir)
}
