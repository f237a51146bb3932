#pragma once

#include <ostream>

#include "absl/status/status.h"
#include "cli/args.h"
#include "cli/client.h"

namespace edgeloop::cli {

enum class OutputFormat { kTable, kJson };

/// Runs `edgeloop <noun> <verb> ...` (args.words[0] is the noun) against `client`, writing
/// the result to `out`. INVALID_ARGUMENT for a usage error.
absl::Status RunCommand(const Args& args, Client& client, OutputFormat format, std::ostream& out);

/// The --help text.
const char* Usage();

}  // namespace edgeloop::cli
