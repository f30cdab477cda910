package images_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// toolTimeout bounds each external checker: generous, the machines are shared.
const toolTimeout = 10 * time.Minute

// tool returns the path of the program name from the Debian package pkg. When
// it is missing the test is skipped, saying what to install, or fails if CI is
// set: `make deps` installs it there.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found; install it with `apt-get install %s` (Debian) or `make deps`", name, pkg)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// repoRoot is the top of the work tree: the checks cover the whole repository.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

// run runs name with args in dir and returns its combined output.
func run(t *testing.T, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s: no result within %v: %w", name, toolTimeout, ctx.Err())
	}
	return string(out), err
}

var shebang = regexp.MustCompile(`^#!\s*(/usr/bin/env\s+)?(\S*/)?(ba|da|k)?sh(\s|$)`)

// shellScripts lists the repository's shell scripts, relative to root: files
// named *.sh or *.bats, and files whose first line is a sh or bash shebang.
// Files git ignores are left out; new files not yet added are in.
func shellScripts(t *testing.T, root string) []string {
	t.Helper()
	git := tool(t, "git", "git")
	out, err := run(t, root, git, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		t.Fatalf("git ls-files: %v\n%s", err, out)
	}
	var scripts []string
	for _, f := range strings.Split(strings.TrimRight(out, "\x00"), "\x00") {
		if f == "" {
			continue
		}
		if strings.HasSuffix(f, ".sh") || strings.HasSuffix(f, ".bats") {
			scripts = append(scripts, f)
			continue
		}
		ok, err := hasShellShebang(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			scripts = append(scripts, f)
		}
	}
	slices.Sort(scripts)
	return slices.Compact(scripts)
}

func hasShellShebang(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // deleted in the work tree, not yet in the index
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false, err
	}
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return shebang.MatchString(line), nil
}

func TestShellScriptsPassShellcheck(t *testing.T) {
	shellcheck := tool(t, "shellcheck", "shellcheck")
	root := repoRoot(t)
	scripts := shellScripts(t, root)
	// The list must hold the scripts known to exist, or the check proves nothing.
	for _, want := range []string{"infra/images/linux/start.sh", "infra/images/test/start.bats", "infra/images/test/config.sh", "scripts/with-dockerd"} {
		if !slices.Contains(scripts, want) {
			t.Errorf("shell scripts found: %v; want %s among them", scripts, want)
		}
	}
	t.Logf("shellcheck on %d scripts: %s", len(scripts), strings.Join(scripts, " "))
	if out, err := run(t, root, shellcheck, append([]string{"--format=gcc"}, scripts...)...); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

func TestShebangDetection(t *testing.T) {
	for line, want := range map[string]bool{
		"#!/bin/sh\n":                 true,
		"#!/bin/bash -e\n":            true,
		"#!/usr/bin/env bash\n":       true,
		"#! /usr/bin/env sh\n":        true,
		"#!/usr/bin/env bats\n":       false, // found by its .bats name instead
		"#!/usr/bin/env python3\n":    false,
		"#!/usr/bin/env bashbrew\n":   false,
		"# a comment about /bin/sh\n": false,
	} {
		if got := shebang.MatchString(line); got != want {
			t.Errorf("shebang match %q = %v; want %v", line, got, want)
		}
	}
}

var dockerfiles = []string{"linux/Dockerfile", "windows/Dockerfile"}

// runnerDockerfile is the GitHub Actions runner image (docs/github.md);
// bitbucketDockerfile wraps Atlassian's Bitbucket runner (docs/bitbucket.md).
const (
	runnerDockerfile    = "github/Dockerfile"
	bitbucketDockerfile = "bitbucket/Dockerfile"
)

// Debian does not package hadolint (there is no candidate for it in bookworm),
// and nothing but Debian packages and Go modules can be installed here. When
// it is on PATH anyway it runs; TestDockerfileRequirements checks what this
// project needs from the Dockerfiles either way.
func TestDockerfilesPassHadolint(t *testing.T) {
	hadolint, err := exec.LookPath("hadolint")
	if err != nil {
		t.Skip("hadolint is not installed, and Debian does not package it: skipped; TestDockerfileRequirements checks the image requirements instead")
	}
	if out, err := run(t, ".", hadolint, append(slices.Clone(dockerfiles), runnerDockerfile, bitbucketDockerfile)...); err != nil {
		t.Errorf("hadolint: %v\n%s", err, out)
	}
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

// parseDockerfile reads the instructions of a Dockerfile, honouring the
// escape parser directive (the Windows one uses a backtick).
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	escape := `\`
	var ins []instruction
	var cur strings.Builder
	directives := true
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		trimmed := strings.TrimSpace(line)
		if directives {
			if m := regexp.MustCompile(`^#\s*escape\s*=\s*(\S)`).FindStringSubmatch(trimmed); m != nil {
				escape = m[1]
				continue
			}
			if !strings.HasPrefix(trimmed, "#") || trimmed == "#" || !strings.Contains(trimmed, "=") {
				directives = false
			}
		}
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, escape) {
			cur.WriteString(strings.TrimSuffix(trimmed, escape) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		ins = append(ins, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: the last instruction ends with a line continuation", path)
	}
	return ins
}

// argDefault is the default of build argument name.
func argDefault(ins []instruction, name string) (string, bool) {
	for _, in := range ins {
		if in.cmd == "ARG" {
			if k, v, ok := strings.Cut(in.args, "="); ok && k == name {
				return strings.Trim(v, `"`), true
			}
		}
	}
	return "", false
}

func last(ins []instruction, cmd string) (string, bool) {
	for i := len(ins) - 1; i >= 0; i-- {
		if ins[i].cmd == cmd {
			return ins[i].args, true
		}
	}
	return "", false
}

// The requirements of docs/images.md, for our own images: a glibc base, the
// agent's dependencies, a non-root user, the agent version as a build
// argument, a CMD and no ENTRYPOINT.
func TestDockerfileRequirements(t *testing.T) {
	linux := parseDockerfile(t, "linux/Dockerfile")
	windows := parseDockerfile(t, "windows/Dockerfile")

	if from, _ := last(linux, "FROM"); !strings.HasPrefix(from, "ubuntu:") || strings.Contains(from, "alpine") {
		t.Errorf("linux/Dockerfile: FROM %s; want an Ubuntu LTS (glibc) base", from)
	}
	if from, _ := last(windows, "FROM"); from != "mcr.microsoft.com/windows/servercore:ltsc2022" {
		t.Errorf("windows/Dockerfile: FROM %s; want mcr.microsoft.com/windows/servercore:ltsc2022", from)
	}
	var installs string
	for _, in := range linux {
		if in.cmd == "RUN" && strings.Contains(in.args, "apt-get install") {
			installs += in.args + " "
		}
	}
	for _, pkg := range []string{"ca-certificates", "curl", "git", "jq", "libicu"} {
		if !regexp.MustCompile(`\s` + regexp.QuoteMeta(pkg) + `[0-9]*\s`).MatchString(installs) {
			t.Errorf("linux/Dockerfile installs no %s (apt-get install: %s)", pkg, installs)
		}
	}
	if !strings.Contains(installs+strings.Join(runArgs(linux), " "), "installdependencies.sh") {
		t.Error("linux/Dockerfile does not run the agent's bin/installdependencies.sh")
	}
	if user, _ := last(linux, "USER"); !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user) {
		t.Errorf("linux/Dockerfile: USER %q; want a numeric non-root uid, so that runAsNonRoot can check it", user)
	}
	if user, _ := last(windows, "USER"); user == "" || strings.EqualFold(user, "ContainerAdministrator") {
		t.Errorf("windows/Dockerfile: USER %q; want an ordinary user such as ContainerUser", user)
	}
	for name, ins := range map[string][]instruction{"linux/Dockerfile": linux, "windows/Dockerfile": windows} {
		if _, ok := last(ins, "ENTRYPOINT"); ok {
			t.Errorf("%s has an ENTRYPOINT; use CMD, so the image also works as a job container", name)
		}
		cmd, ok := last(ins, "CMD")
		if !ok || !strings.Contains(cmd, "start.") {
			t.Errorf("%s: CMD %q; want it to run the start script", name, cmd)
		}
		if v, ok := argDefault(ins, "AGENT_VERSION"); !ok || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
			t.Errorf("%s: ARG AGENT_VERSION default %q; want a version such as 4.275.0", name, v)
		}
	}
	lv, _ := argDefault(linux, "AGENT_VERSION")
	wv, _ := argDefault(windows, "AGENT_VERSION")
	if lv != wv {
		t.Errorf("AGENT_VERSION defaults differ: linux %s, windows %s", lv, wv)
	}
}

func runArgs(ins []instruction) []string {
	var out []string
	for _, in := range ins {
		if in.cmd == "RUN" {
			out = append(out, in.args)
		}
	}
	return out
}

func TestStartScriptUnderBats(t *testing.T) {
	bats := tool(t, "bats", "bats")
	out, err := run(t, ".", bats, "--tap", "test")
	t.Log(out)
	if err != nil {
		t.Fatalf("bats: %v (the lines starting with 'not ok' above say which tests failed)", err)
	}
	if !strings.Contains(out, "ok 1 ") {
		t.Fatalf("bats ran no test:\n%s", out)
	}
}

// Every YAML and JSON file under infra/images and infra/pipelines parses.
func TestConfigFilesParse(t *testing.T) {
	root := repoRoot(t)
	var files []string
	for _, dir := range []string{"infra/images", "infra/pipelines"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch filepath.Ext(path) {
			case ".yml", ".yaml", ".json":
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) == 0 {
		t.Fatal("no YAML or JSON file found; the pipeline at least should be there")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		if err := parseConfig(f, data); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
	}
}

func parseConfig(path string, data []byte) error {
	if filepath.Ext(path) == ".json" {
		var v any
		return json.Unmarshal(data, &v)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func TestParseConfigRejectsBrokenFiles(t *testing.T) {
	if err := parseConfig("x.yml", []byte("a: [1, 2\n")); err == nil {
		t.Error("a YAML flow sequence left open parsed")
	}
	if err := parseConfig("x.json", []byte(`{"a": 1,}`)); err == nil {
		t.Error("JSON with a trailing comma parsed")
	}
	if err := parseConfig("x.yaml", []byte("a: 1\n---\nb: 2\n")); err != nil {
		t.Errorf("two YAML documents: %v", err)
	}
}

// pipeline is the part of infra/pipelines/agent-images.yml the checks read.
type pipeline struct {
	Variables map[string]string `yaml:"variables"`
	Stages    []struct {
		Stage string `yaml:"stage"`
		Jobs  []struct {
			Pool  map[string]string `yaml:"pool"`
			Steps []map[string]any  `yaml:"steps"`
		} `yaml:"jobs"`
	} `yaml:"stages"`
}

// The pipeline builds the agent images and the GitHub runner image (the
// Bitbucket one wraps Atlassian's, built by its owner), with the versions
// they default to, logs in through a service connection, on Linux with a
// registry layer cache and on Windows on a Windows agent, and tags with the
// commit.
func TestPipelineMatchesImages(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "infra/pipelines/agent-images.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var p pipeline
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	lv, _ := argDefault(parseDockerfile(t, "linux/Dockerfile"), "AGENT_VERSION")
	if got := p.Variables["agentVersion"]; got != lv {
		t.Errorf("pipeline agentVersion %q; want %q, the Dockerfiles' AGENT_VERSION default", got, lv)
	}
	rv, _ := argDefault(parseDockerfile(t, runnerDockerfile), "RUNNER_VERSION")
	if got := p.Variables["runnerVersion"]; got != rv {
		t.Errorf("pipeline runnerVersion %q; want %q, the runner Dockerfile's RUNNER_VERSION default", got, rv)
	}
	text := string(data)
	for _, f := range append(slices.Clone(dockerfiles), runnerDockerfile) {
		if !strings.Contains(text, "infra/images/"+f) {
			t.Errorf("the pipeline does not build infra/images/%s", f)
		}
	}
	for _, want := range []string{"--cache-from", "--cache-to", "type=registry", "$(Build.SourceVersion)", "AGENT_VERSION=$(agentVersion)", "RUNNER_SHA256=$(runnerSha256)"} {
		if !strings.Contains(text, want) {
			t.Errorf("the pipeline has no %s", want)
		}
	}
	images := map[string]string{}
	for _, s := range p.Stages {
		for _, j := range s.Jobs {
			images[s.Stage] = j.Pool["vmImage"]
			logins := 0
			for _, st := range j.Steps {
				if st["task"] == "Docker@2" {
					if in, _ := st["inputs"].(map[string]any); in["command"] == "login" && in["containerRegistry"] == "$(registryConnection)" {
						logins++
					}
				}
			}
			if logins != 1 {
				t.Errorf("stage %s: %d Docker@2 logins through $(registryConnection); want 1", s.Stage, logins)
			}
		}
	}
	if !strings.HasPrefix(images["linux"], "ubuntu-") || !strings.HasPrefix(images["github"], "ubuntu-") || images["windows"] != "windows-2022" {
		t.Errorf("build agents %v; want linux and github on ubuntu-*, windows on windows-2022", images)
	}
}

var envName = regexp.MustCompile(`\bAZP_[A-Z_]*[A-Z]\b`)

func envNames(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	names := envName.FindAllString(string(data), -1)
	slices.Sort(names)
	return slices.Compact(names)
}

// Both start scripts read the same variables, and docs/images.md describes
// every one of them.
func TestStartScriptsShareTheDocumentedEnvironment(t *testing.T) {
	linux := envNames(t, "linux/start.sh")
	windows := envNames(t, "windows/start.ps1")
	if !slices.Equal(linux, windows) {
		t.Errorf("start.sh reads %v; start.ps1 reads %v; want the same", linux, windows)
	}
	for _, want := range []string{"AZP_URL", "AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_POOL", "AZP_AGENT_NAME", "AZP_WORK", "AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID"} {
		if !slices.Contains(linux, want) {
			t.Errorf("start.sh does not read %s, which the agent environment (docs/architecture.md) passes", want)
		}
	}
	doc := filepath.Join(repoRoot(t), "docs", "images.md")
	documented := envNames(t, doc)
	for _, n := range linux {
		if !slices.Contains(documented, n) {
			t.Errorf("docs/images.md does not describe %s", n)
		}
	}
}
