#include "cli/commands.h"

#include "absl/strings/str_cat.h"
#include "cli/command.h"

namespace edgeloop::cli {

const char* Usage() {
  return R"(usage: edgeloop [--server HOST:PORT] [--token-file FILE] [-o table|json] <noun> <verb> ...

  model create NAME [--description TEXT] [--label k=v ...]
  model push NAME FILE.onnx [--label k=v] [--metric k=v] [--parent N] [--training-run ID]
             [--dataset-digest sha256:...] [--source TEXT] [--validation FILE] [--calibration FILE]
  model list
  model show NAME [VERSION|ALIAS]
  model artifacts NAME VERSION        signed modules per target class, and compile jobs
  model alias set NAME ALIAS VERSION
  model alias history NAME ALIAS
  token create --name NAME --role viewer|operator|admin [--ttl 24h]
  token list
  token revoke ID
  token create --enroll [--labels k=v,...] [--max-uses N] [--ttl 24h]
  token list --enroll
  token revoke --enroll ID
  device list [--selector 'site=plant-3,hw.arch=aarch64,hw.ram_mb>=512']
  device show ID
  device label ID key=value ... key- ...
  device decommission ID
  device assign (--selector SEL | --device ID) --model M (--version V | --alias A)
                                      what devices should run; the newest assignment wins
  device assignments [--model M]
  device rollback ID --model M        back to the module the device kept as previous
  telemetry show MODEL [--version V] [--cohort VALUE] [--since 1h] [--step 5m]
                                      calls, errors, latency, accuracy and drift per version
  telemetry device ID [--since 24h] [--limit 20]
                                      what a device reported, and its latest windows
  telemetry thresholds MODEL [--psi 0.2] [--js 0.1] [--ks-alpha 0.05] [--min-count 100]
                                      when the model's features count as drifted
                                      ("default": the server's value)
  rollout create --model M (--version V | --alias A) [--selector SEL]
                 [--waves 1%,10%,50%,100% | --waves 5,50,500 | --rate START,FACTOR[,PER_MIN]]
                 [--bake 10m] [--gate 'METRIC>=X[:min=N][:window=10m]' ...]
                 [--on-failure pause|rollback] [--canary SEL] [--max-concurrent N]
                 [--maintenance-window 'CRON' --maintenance-duration 2h --time-zone ZONE]
                 [--offline-deadline 24h] [--inconclusive 1h] [--supersedes ID]
                 [--shadow 10m [--shadow-sample 0.1] [--shadow-cpu 0.1] [--shadow-tolerance 0]]
                                      ship a version in gated waves; gate metrics:
                                      install_success_ratio failed_installs error_rate
                                      latency_p95_ratio accuracy_delta drifted_feature_ratio
                                      shadow_agreement (judged in each wave's shadow stage)
  rollout list [--model M] [--active]
  rollout show ID [--watch] [--interval 2s]
                                      waves with their devices, and the gates' values
  rollout events ID                   every transition, in order
  rollout pause|resume|abort|promote ID [--reason TEXT]

--server defaults to $EDGELOOP_SERVER or 127.0.0.1:9090 (the operator gRPC port);
--token-file defaults to $EDGELOOP_TOKEN_FILE or ./var/admin.token.
)";
}

absl::Status RunCommand(const Args& args, Client& client, OutputFormat format, std::ostream& out) {
  if (args.words.empty())
    return absl::InvalidArgumentError("missing command (see edgeloop --help)");
  const std::string& noun = args.words[0];
  const Command command{args, client, format, out};
  if (noun == "model") return ModelCommand(command);
  if (noun == "token") return TokenCommand(command);
  if (noun == "device") return DeviceCommand(command);
  if (noun == "telemetry") return TelemetryCommand(command);
  if (noun == "rollout") return RolloutCommand(command);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command \"", noun, "\" (see edgeloop --help)"));
}

}  // namespace edgeloop::cli
