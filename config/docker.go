package config

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Docker holds the Docker provider's settings (docs/providers/docker.md).
type Docker struct {
	// Host is the engine address (unix:///var/run/docker.sock, tcp://host:2376);
	// when empty, DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH apply.
	Host string `yaml:"host"`
	// TLSCertPath is a directory holding ca.pem, cert.pem and key.pem for a
	// tcp:// host; the engine's certificate is always verified.
	TLSCertPath string          `yaml:"tls_cert_path"`
	Network     string          `yaml:"network"` // host | none | bridge | a user network
	Pull        string          `yaml:"pull"`    // always | missing | never
	Registry    *DockerRegistry `yaml:"registry"`
	// Mounts are source:target[:ro|:rw]; a source is an absolute host path
	// or a volume name.
	Mounts []string `yaml:"mounts"`
	// DockerSocket mounts the engine's own socket at /var/run/docker.sock,
	// for an agent that starts containers on the engine, as a Bitbucket
	// runner starts its steps'. Risk: the container then controls the
	// engine, which is root on its host; give it hosts of its own.
	DockerSocket bool `yaml:"docker_socket"`
	// ContainerLogs mounts /var/lib/docker/containers read-only, where a
	// Bitbucket runner reads its step containers' logs. Risk: the logs of
	// every container on the host are readable in it.
	ContainerLogs bool `yaml:"container_logs"`
	// SharedDir is a host directory mounted at the same path, for
	// containers the agent starts through the socket to see the files it
	// prepares (a Bitbucket runner's WORKING_DIRECTORY). Risk: the agents
	// on one host see each other's files there.
	SharedDir string `yaml:"shared_dir"`
	// Labels are added to every container, next to the agentscaler.io/ ones.
	Labels map[string]string `yaml:"labels"`
	// TokenFile passes secrets as read-only files named by <NAME>_FILE
	// instead of environment variables, which docker inspect shows. On
	// unless set to false (SecretsAsFiles): the agent images of infra/images
	// read AZP_TOKEN_FILE.
	TokenFile *bool `yaml:"token_file"`
	// MTU, when set, reaches the agent as AGENT_DOCKER_MTU_VALUE for the job
	// networks it creates.
	MTU int `yaml:"mtu"`
	// Prepull pulls the agent image when the autoscaler starts.
	Prepull bool `yaml:"prepull"`
}

// SecretsAsFiles reports whether secrets reach the container as files:
// token_file, true unless set to false.
func (d *Docker) SecretsAsFiles() bool { return d == nil || d.TokenFile == nil || *d.TokenFile }

// DockerRegistry says where the credentials for pulling the agent image
// come from: two environment variables, or a Docker client config file.
type DockerRegistry struct {
	UsernameEnv string `yaml:"username_env"`
	PasswordEnv string `yaml:"password_env"`
	// ConfigFile is a .docker/config.json whose "auths" hold basic-auth
	// entries, matched by the image's registry host.
	ConfigFile string `yaml:"config_file"`
}

// Mount is one parsed entry of docker.mounts.
type Mount struct {
	Source   string // absolute host path, or a volume name
	Target   string // absolute path in the container
	ReadOnly bool
}

// Bind reports whether the source is a host path rather than a volume name.
func (m Mount) Bind() bool { return strings.HasPrefix(m.Source, "/") }

// The MTU bounds: the IPv4 minimum a host must accept, and a jumbo frame.
const (
	minMTU = 576
	maxMTU = 9000
)

var (
	// Docker's own rules for volume and network names.
	dockerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	dockerHosts  = []string{"unix", "tcp", "npipe"}
)

// ParseMount parses a docker.mounts entry: source:target, source:target:ro
// or source:target:rw.
func ParseMount(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	var m Mount
	switch len(parts) {
	case 3:
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return Mount{}, fmt.Errorf("mount %q: the mode after the target must be ro or rw (got %q)", s, parts[2])
		}
	case 2:
	default:
		return Mount{}, fmt.Errorf("mount %q: write source:target or source:target:ro, such as /var/run/docker.sock:/var/run/docker.sock", s)
	}
	m.Source, m.Target = parts[0], parts[1]
	switch {
	case m.Source == "":
		return Mount{}, fmt.Errorf("mount %q: the source is empty; give an absolute host path or a volume name before the ':'", s)
	case !m.Bind() && !dockerNameRE.MatchString(m.Source):
		return Mount{}, fmt.Errorf("mount %q: the source must be an absolute host path or a volume name (letters, digits, '_', '.', '-')", s)
	case m.Target == "":
		return Mount{}, fmt.Errorf("mount %q: the target is empty; give the absolute path in the container after the ':'", s)
	case !strings.HasPrefix(m.Target, "/"):
		return Mount{}, fmt.Errorf("mount %q: the target must be an absolute path in the container, such as /cache", s)
	case path.Clean(m.Target) == "/":
		return Mount{}, fmt.Errorf("mount %q: the target must not be the container's root directory", s)
	}
	return m, nil
}

// ParsedMounts returns docker.mounts parsed, then the mounts docker_socket,
// container_logs and shared_dir ask for; validation has already refused a
// configuration with a bad entry.
func (d *Docker) ParsedMounts() ([]Mount, error) {
	out := make([]Mount, 0, len(d.Mounts)+3)
	for _, s := range d.Mounts {
		m, err := ParseMount(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return append(out, d.optionMounts()...), nil
}

// DockerSocketPath is where the engine's socket is mounted in a container.
const DockerSocketPath = "/var/run/docker.sock"

// optionMounts are the mounts of docker_socket, container_logs and shared_dir.
func (d *Docker) optionMounts() []Mount {
	var out []Mount
	if d.DockerSocket {
		src := DockerSocketPath
		if rest, ok := strings.CutPrefix(d.Host, "unix://"); ok {
			src = rest
		}
		out = append(out, Mount{Source: src, Target: DockerSocketPath})
	}
	if d.ContainerLogs {
		out = append(out, Mount{Source: "/var/lib/docker/containers", Target: "/var/lib/docker/containers", ReadOnly: true})
	}
	if d.SharedDir != "" {
		out = append(out, Mount{Source: d.SharedDir, Target: d.SharedDir})
	}
	return out
}

func (d *Docker) defaults() {
	if d.Network == "" {
		d.Network = DefaultDockerNetwork
	}
	if d.Pull == "" {
		d.Pull = DefaultDockerPull
	}
}

func (v *validator) docker(k string, d *Docker) {
	v.dockerHost(k, d)
	if !dockerNameRE.MatchString(d.Network) || strings.Contains(d.Network, ":") {
		v.add(k+"network", "must be host, none, bridge or the name of a user network (got %q)", d.Network)
	}
	v.oneOf(k+"pull", d.Pull, pullPolicies)
	if d.Prepull && d.Pull == "never" {
		v.add(k+"prepull", "pulls the image, but pull is never; set pull: missing or always, or remove prepull")
	}
	if r := d.Registry; r != nil {
		v.dockerRegistry(k+"registry.", r)
	}
	targets := map[string]int{}
	for i, s := range d.Mounts {
		key := fmt.Sprintf("%smounts[%d]", k, i)
		m, err := ParseMount(s)
		if err != nil {
			v.add(key, "%v", err)
			continue
		}
		target := path.Clean(m.Target)
		if j, dup := targets[target]; dup {
			v.add(key, "mounts %s again, as mounts[%d] does; keep one mount per target", target, j)
			continue
		}
		targets[target] = i
	}
	if d.DockerSocket && d.Host != "" && !strings.HasPrefix(d.Host, "unix://") {
		v.add(k+"docker_socket", "mounts the engine's socket, so host must be a unix:// socket on the machine the containers run on (got %s)", d.Host)
	}
	if s := d.SharedDir; s != "" && (!strings.HasPrefix(s, "/") || path.Clean(s) != s || s == "/") {
		v.add(k+"shared_dir", "must be a clean absolute host path other than /, such as /tmp/runners (got %q)", s)
	}
	for _, m := range d.optionMounts() {
		if j, dup := targets[m.Target]; dup {
			v.add(k+"mounts", "mounts[%d] mounts %s, which docker_socket, container_logs or shared_dir mounts already; remove one", j, m.Target)
		}
	}
	for _, name := range sortedKeys(d.Labels) {
		switch {
		case strings.TrimSpace(name) == "":
			v.add(k+"labels", "a label has an empty key; use a key such as com.example.team")
		case strings.HasPrefix(strings.ToLower(name), "agentscaler.io/"):
			v.add(k+"labels."+name, "the agentscaler.io/ prefix is reserved for the labels the autoscaler sets; use your own prefix, such as com.example/")
		}
	}
	if d.MTU != 0 && (d.MTU < minMTU || d.MTU > maxMTU) {
		v.add(k+"mtu", "must be between %d and %d (got %d), such as 1450 on a VXLAN overlay; or leave it out", minMTU, maxMTU, d.MTU)
	}
}

func (v *validator) dockerHost(k string, d *Docker) {
	if d.Host == "" {
		if d.TLSCertPath != "" {
			v.add(k+"tls_cert_path", "applies to a tcp:// host; set host, or use DOCKER_CERT_PATH with DOCKER_HOST")
		}
		return
	}
	u, err := url.Parse(d.Host)
	switch {
	case err != nil || !strings.Contains(d.Host, "://"):
		v.add(k+"host", "must be an engine address such as unix:///var/run/docker.sock or tcp://docker.example.com:2376")
		return
	case u.Scheme == "ssh":
		v.add(k+"host", "ssh:// is not supported; forward the engine's socket (ssh -L) and use unix:// or tcp://")
		return
	case !slices.Contains(dockerHosts, u.Scheme):
		v.add(k+"host", "must start with unix://, tcp:// or npipe:// (got %s://)", u.Scheme)
		return
	case u.User != nil:
		v.add(k+"host", "must not carry credentials; use tls_cert_path for a remote engine")
		return
	}
	if d.TLSCertPath != "" && u.Scheme != "tcp" {
		v.add(k+"tls_cert_path", "applies to a tcp:// host only (host is %s://); remove it", u.Scheme)
	}
}

func (v *validator) dockerRegistry(k string, r *DockerRegistry) {
	switch {
	case r.ConfigFile != "" && (r.UsernameEnv != "" || r.PasswordEnv != ""):
		v.add(k+"config_file", "username_env/password_env are set as well; keep either config_file or the two variables")
	case r.ConfigFile != "":
	case r.UsernameEnv == "" && r.PasswordEnv == "":
		v.add(strings.TrimSuffix(k, "."), "is empty; set username_env and password_env, or config_file (a .docker/config.json)")
	case r.PasswordEnv == "":
		v.add(k+"password_env", "required with username_env: name the environment variable that holds the registry password or token")
	case r.UsernameEnv == "":
		v.add(k+"username_env", "required with password_env: name the environment variable that holds the registry user name")
	default:
		v.env(k+"username_env", r.UsernameEnv, "the registry user name")
		v.env(k+"password_env", r.PasswordEnv, "the registry password or token")
	}
}
