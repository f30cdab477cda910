package config

// Kubernetes holds the Kubernetes provider's settings.
type Kubernetes struct {
	Namespace   string `yaml:"namespace"`
	TokenSecret string `yaml:"token_secret"` // Secret holding AZP_TOKEN, by reference
	Kubeconfig  string `yaml:"kubeconfig"`   // in-cluster config when empty
	Context     string `yaml:"context"`
}

func (kc *Kubernetes) defaults() {
	if kc.Namespace == "" {
		kc.Namespace = DefaultKubernetesNamespace
	}
}

func (v *validator) kubernetes(k string, kc *Kubernetes) {
	if !dnsLabelRE.MatchString(kc.Namespace) {
		v.add(k+"namespace", "must be a Kubernetes namespace name: lowercase letters, digits and '-', at most 63 characters (got %q)", kc.Namespace)
	}
	switch {
	case kc.TokenSecret == "":
		v.add(k+"token_secret", "required when provider is kubernetes: the Secret that holds AZP_TOKEN for the agents")
	case !dnsSubdomRE.MatchString(kc.TokenSecret):
		v.add(k+"token_secret", "must be a Kubernetes Secret name: lowercase letters, digits, '-' and '.' (got %q)", kc.TokenSecret)
	}
}
