#include "compiler/compile_contract.h"

#include "absl/strings/str_cat.h"
#include "common/proto_json.h"

namespace edgeloop::compiler {

CompileExit ExitFor(v1::CompileOutcome outcome) {
  switch (outcome) {
    case v1::COMPILE_OK:
      return CompileExit::kOk;
    case v1::COMPILE_USAGE_ERROR:
      return CompileExit::kUsage;
    case v1::COMPILE_VALIDATION_FAILED:
      return CompileExit::kValidationFailed;
    default:
      return CompileExit::kModelRejected;
  }
}

v1::CompileOutcome OutcomeFor(CompileExit exit) {
  switch (exit) {
    case CompileExit::kOk:
      return v1::COMPILE_OK;
    case CompileExit::kModelRejected:
      return v1::COMPILE_MODEL_REJECTED;
    case CompileExit::kUsage:
      return v1::COMPILE_USAGE_ERROR;
    case CompileExit::kValidationFailed:
      return v1::COMPILE_VALIDATION_FAILED;
  }
  return v1::COMPILE_OUTCOME_UNSPECIFIED;
}

std::optional<CompileExit> ExitFromStatus(int status) {
  switch (status) {
    case 0:
    case 1:
    case 2:
    case 3:
      return static_cast<CompileExit>(status);
    default:
      return std::nullopt;
  }
}

bool IsPermanent(v1::CompileOutcome outcome) {
  // The tool is deterministic: the same model, target and set give the same answer.
  return outcome == v1::COMPILE_MODEL_REJECTED || outcome == v1::COMPILE_USAGE_ERROR ||
         outcome == v1::COMPILE_VALIDATION_FAILED;
}

std::string SerializeReport(const v1::CompileReport& report) { return PrintProtoJson(report); }

absl::StatusOr<v1::CompileReport> ParseReport(absl::string_view json) {
  v1::CompileReport report;
  if (absl::Status s = ParseProtoJson(json, &report); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("compile report: ", s.message()));
  }
  if (report.outcome() == v1::COMPILE_OUTCOME_UNSPECIFIED) {
    return absl::InvalidArgumentError("compile report has no outcome");
  }
  return report;
}

}  // namespace edgeloop::compiler
