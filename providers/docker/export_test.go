package docker

// SetLostNameHook makes f run each time a create of p has lost the name to
// another container, before that container is looked up.
func SetLostNameHook(p *Provider, f func(name string)) { p.lostName = f }
