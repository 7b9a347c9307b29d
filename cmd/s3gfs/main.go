// Command s3gfs formats, mounts and inspects s3gfs volumes: POSIX
// filesystems kept entirely in an S3 bucket, mountable read-write by many
// hosts at once.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stderr io.Writer) error
}

var commands = []command{
	{"format", "create a new volume in a bucket", runFormat},
	{"mount", "mount a volume with FUSE", runMount},
	{"hosts", "list the live and lapsed hosts of a volume", runHosts},
	{"snapshot", "create, list or delete snapshots (pins) of a volume", runSnapshot},
	{"clone", "make a writable clone of a volume at once, copying nothing", runClone},
	{"gc", "run one reaper pass: delete what no one can read any more", runGC},
	{"reaper", "run reaper passes continuously, with Prometheus metrics", runReaper},
	{"retention", "show or set how far back a volume stays mountable", runRetention},
	{"versions", "list the stored versions of a file or directory", runVersions},
	{"fsck", "check a volume's objects and references", runFsck},
	{"version", "print the version", runVersion},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `s3gfs: a shared POSIX filesystem kept entirely in an S3 bucket.

Usage:
  s3gfs <command> [flags] [arguments]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Run "s3gfs <command> --help" for a command's flags.

Quick start against any S3-compatible store:
  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
  s3gfs format --endpoint http://127.0.0.1:7070 s3://my-bucket/vol1
  s3gfs mount  --endpoint http://127.0.0.1:7070 s3://my-bucket/vol1 /mnt/vol1

Credentials and region come from the AWS SDK's default chain (environment,
shared config files, instance or workload identity); the region defaults to
us-east-1. The endpoint comes from --endpoint, else AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL, else AWS itself. AWS_CA_BUNDLE is honoured.
`)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// errUsage marks errors caused by how the command was invoked (exit 2).
var errUsage = errors.New("usage")

func run(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(os.Stdout)
		return 0
	case "-v", "--version":
		name = "version"
	}
	for _, c := range commands {
		if c.name == name {
			err := c.run(context.Background(), args[1:], stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, errHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "s3gfs %s: %v\n", name, err)
				return 2
			default:
				fmt.Fprintf(stderr, "s3gfs %s: %v\n", name, err)
				return 1
			}
		}
	}
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	sort.Strings(names)
	fmt.Fprintf(stderr, "s3gfs: unknown command %q (commands: %s; see s3gfs --help)\n", name, strings.Join(names, ", "))
	return 2
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

func runVersion(ctx context.Context, args []string, stderr io.Writer) error {
	fmt.Println("s3gfs", versionString())
	return nil
}
