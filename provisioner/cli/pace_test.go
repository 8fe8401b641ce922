package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/racker/racker/provisioner/orchestrator"
)

// --parallel, --bmc-concurrency and --bmc-interval reach the orchestrator
// as given, with the orchestrator's shipped defaults when not given, and
// nonsense is refused by name.
func TestPaceFlags(t *testing.T) {
	parse := func(args ...string) (orchestrator.Config, error) {
		t.Helper()
		var f provisionFlags
		fs := pflag.NewFlagSet("bootstrap", pflag.ContinueOnError)
		addProvisionFlags(fs, &f)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		var cfg orchestrator.Config
		return cfg, f.pace(&cfg)
	}
	cfg, err := parse()
	if err != nil || cfg.Parallel != orchestrator.DefaultParallel || cfg.BMCConcurrency != orchestrator.DefaultBMCConcurrency ||
		cfg.BMCInterval != orchestrator.DefaultBMCInterval {
		t.Errorf("defaults: %+v %v", cfg, err)
	}
	cfg, err = parse("--parallel", "250", "--bmc-interval", "5ms", "--bmc-concurrency", "40")
	if err != nil || cfg.Parallel != 250 || cfg.BMCInterval != 5*time.Millisecond || cfg.BMCConcurrency != 40 {
		t.Errorf("given: %+v %v", cfg, err)
	}
	// 0 is "no spacing": the orchestrator's negative, not its default.
	if cfg, err = parse("--bmc-interval", "0"); err != nil || cfg.BMCInterval >= 0 {
		t.Errorf("--bmc-interval 0: %v %v", cfg.BMCInterval, err)
	}
	for flag, value := range map[string]string{"--parallel": "0", "--bmc-concurrency": "-1", "--bmc-interval": "-5ms"} {
		if _, err := parse(flag, value); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s %s: %v, want a refusal naming the flag", flag, value, err)
		}
	}
}
