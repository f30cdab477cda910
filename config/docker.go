package config

// Docker holds the Docker provider's settings.
type Docker struct {
	Host    string `yaml:"host"`    // DOCKER_HOST when empty
	Network string `yaml:"network"` // host | none | a user network
	Pull    string `yaml:"pull"`    // always | missing | never
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
	v.oneOf(k+"pull", d.Pull, pullPolicies)
}
