// Command pause holds a pod's sandbox, as registry.k8s.io/pause does: it
// does nothing until SIGTERM or SIGINT, then exits 0. The kubetest node
// runs it from an image built here, so no registry is needed.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
