// Command waiter stands in for an agent in container tests. It prints what
// it can see (its user id, and a SHA-256 of every file a *_FILE variable
// names, never the content), then waits until the exit file appears and
// exits with the code written in it (a number and a newline). SIGTERM ends
// it with 143, as a shell would report it.
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// exitFile is dockertest.ExitFile.
const exitFile = "/exit-code"

func main() {
	fmt.Printf("uid=%d\n", os.Getuid())
	env := os.Environ()
	slices.Sort(env)
	for _, kv := range env {
		name, file, _ := strings.Cut(kv, "=")
		if !strings.HasSuffix(name, "_FILE") {
			continue
		}
		if b, err := os.ReadFile(file); err != nil {
			fmt.Printf("file %s error=%v\n", name, err)
		} else {
			fmt.Printf("file %s sha256=%x\n", name, sha256.Sum256(b))
		}
	}
	fmt.Println("waiting")

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(25 * time.Millisecond)
	for {
		select {
		case <-term:
			os.Exit(143)
		case <-tick.C:
		}
		b, err := os.ReadFile(exitFile)
		if err != nil {
			continue
		}
		// A file still being written reads partial: the code counts once
		// its line is complete.
		line, complete := strings.CutSuffix(string(b), "\n")
		if code, err := strconv.Atoi(line); complete && err == nil {
			os.Exit(code)
		}
	}
}
