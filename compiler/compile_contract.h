#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "edgeloop/v1/compile.pb.h"

namespace edgeloop::compiler {

/// edgeloop-compile's exit status, shared by the tool and the CI stage that runs it. Each
/// names one CompileOutcome of the report the tool writes (compile.proto).
enum class CompileExit : int {
  kOk = 0,
  kModelRejected = 1,
  kUsage = 2,
  kValidationFailed = 3,
};

CompileExit ExitFor(v1::CompileOutcome outcome);
v1::CompileOutcome OutcomeFor(CompileExit exit);
/// The exit the status means; nullopt for a status the tool never exits with (a crash, a
/// signal, something else that ran in its place).
std::optional<CompileExit> ExitFromStatus(int status);

/// True for outcomes that running the tool again on the same input cannot change.
bool IsPermanent(v1::CompileOutcome outcome);

/// The report as the tool writes it, and as the CI stage reads it: INVALID_ARGUMENT for a
/// report that does not parse or has no outcome.
std::string SerializeReport(const v1::CompileReport& report);
absl::StatusOr<v1::CompileReport> ParseReport(absl::string_view json);

}  // namespace edgeloop::compiler
