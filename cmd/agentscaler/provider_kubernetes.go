//go:build !nokubernetes

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/kubernetes"
)

func init() { providerFactories["kubernetes"] = newKubernetesProvider }

// newKubernetesProvider builds a pool's Kubernetes provider from its
// kubernetes: section, the pool's max_lifetime (the Jobs' deadline) and
// startup_timeout (when a pending agent counts as failed).
func newKubernetesProvider(_ context.Context, pool config.Pool, env providerEnv) (providers.Provider, error) {
	opt, err := kubernetesOptions(pool)
	if err != nil {
		return nil, err
	}
	opt.Logger = env.log
	source := "in-cluster"
	if opt.Kubeconfig != "" || opt.Context != "" {
		source = "kubeconfig"
	}
	env.log.Info("Kubernetes provider", "namespace", opt.Namespace, "token_secret", opt.TokenSecret,
		"config", source, "kubeconfig", opt.Kubeconfig, "context", opt.Context)
	if opt.TTLAfterFinished < pool.FailureBackoff {
		env.log.Warn("kubernetes.ttl_after_finished is shorter than failure_backoff: Kubernetes removes a failed agent's Job before the back-off ends, and the scaler starts another sooner",
			"ttl_after_finished", opt.TTLAfterFinished, "failure_backoff", pool.FailureBackoff)
	}
	return kubernetes.New(opt)
}

// kubernetesOptions maps the pool's settings to the provider's options.
// Tolerations and affinity become their pod spec types; an affinity key the
// API does not know is an error, not silently dropped.
func kubernetesOptions(pool config.Pool) (kubernetes.Options, error) {
	kc := pool.Kubernetes
	opt := kubernetes.Options{
		Kubeconfig:       kc.Kubeconfig,
		Context:          kc.Context,
		Namespace:        kc.Namespace,
		TokenSecret:      kc.TokenSecret,
		TokenKey:         kc.TokenKey,
		ServiceAccount:   kc.ServiceAccount,
		ImagePullSecrets: kc.ImagePullSecrets,
		NodeSelector:     kc.NodeSelector,
		Annotations:      kc.Annotations,
		RunAsUser:        kc.RunAsUser,
		HostNetwork:      kc.HostNetwork,
		MaxLifetime:      pool.MaxLifetime,
		StartupTimeout:   pool.StartupTimeout,
	}
	if kc.TTLAfterFinished != nil {
		opt.TTLAfterFinished = *kc.TTLAfterFinished
	}
	for _, t := range kc.Tolerations {
		opt.Tolerations = append(opt.Tolerations, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.TolerationSeconds,
		})
	}
	if len(kc.Affinity) > 0 {
		raw, err := json.Marshal(kc.Affinity)
		if err != nil {
			return kubernetes.Options{}, fmt.Errorf("kubernetes.affinity: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		opt.Affinity = &corev1.Affinity{}
		if err := dec.Decode(opt.Affinity); err != nil {
			return kubernetes.Options{}, fmt.Errorf("kubernetes.affinity: not a pod spec affinity (keys as in a pod spec, such as nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution): %w", err)
		}
	}
	return opt, nil
}
