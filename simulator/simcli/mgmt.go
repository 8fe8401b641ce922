package simcli

import (
	"github.com/spf13/cobra"

	"github.com/racker/racker/simulator/mgmtnode"
)

func init() {
	register(newMgmtBootCmd)
	register(newContainerInitCmd)
}

// newMgmtBootCmd is the hidden first process of the management node, which
// up starts in the node's new namespaces: it mounts the node's disks and
// execs the node's own init.
func newMgmtBootCmd(env *Env) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    mgmtnode.BootCommand + " --node-dir DIR",
		Short:  "Boot the management node (started by up as the node's PID 1)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return mgmtnode.Stage1(mgmtnode.Layout{Dir: dir}) // returns only on failure
		},
	}
	cmd.Flags().StringVar(&dir, "node-dir", "", "the node's folder in the rack")
	cmd.MarkFlagRequired("node-dir")
	return cmd
}

// newContainerInitCmd is the hidden first process of a container that up
// runs in the management node (the installer image).
func newContainerInitCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:    mgmtnode.ContainerCommand + " BUNDLE",
		Short:  "Start a container's command (started by up in the management node)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return mgmtnode.ContainerStage(args[0]) // returns only on failure
		},
	}
}
