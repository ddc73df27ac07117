//go:build !js

// Command ctseg segments CT scans into the 104 structures of the MONAI wholeBody_ct_segmentation
// bundle on the local GPU (or CPU). See README.md for the subcommands.
package main

import (
	"os"

	"ctseg/native/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
