package docker

import (
	"context"
	"path"

	"github.com/docker/docker/api/types/container"
)

// secretMode lets whatever user the image runs as read the file; nothing
// else runs in an agent's container.
const secretMode = 0o444

// secretPath is where the secret name is found in the container.
func secretPath(name string) string { return path.Join(SecretDir, name) }

// copySecrets writes each secret into its file in the container, through
// the archive API: the values travel in the request body only.
func (p *Provider) copySecrets(ctx context.Context, id string, secrets map[string]string) error {
	files := make(map[string][]byte, len(secrets))
	for name, value := range secrets {
		files[secretPath(name)] = []byte(value)
	}
	// Only SecretDir itself is written as a directory entry: an entry for
	// /run would reset the image's own directory.
	archive, err := filesTar(files, secretMode, []string{SecretDir})
	if err != nil {
		return err
	}
	ctx, cancel := p.call(ctx)
	defer cancel()
	return p.cli.CopyToContainer(ctx, id, "/", archive, container.CopyToContainerOptions{})
}
