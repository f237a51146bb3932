#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace edgeloop {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

/// One key/value of a structured log line. Values are written as JSON strings unless
/// `raw` is set (numbers, booleans).
struct LogField {
  LogField(absl::string_view k, absl::string_view v) : key(k), value(v) {}
  LogField(absl::string_view k, const char* v) : key(k), value(v) {}
  LogField(absl::string_view k, const std::string& v) : key(k), value(v) {}
  template <typename N>
  requires std::is_arithmetic_v<N> LogField(absl::string_view k, N n)
      : key(k), value(std::to_string(n)), raw(true) {}
  std::string key;
  std::string value;
  bool raw = false;
};

/// Writes one JSON object per line to stderr: {"ts":..,"level":..,"msg":..,<fields>}.
/// Thread-safe; a line is written with a single write(2) so lines never interleave.
void Log(LogLevel level, absl::string_view message, const std::vector<LogField>& fields = {});

/// Lines below this level are dropped. Default: kInfo.
void SetMinLogLevel(LogLevel level);
/// The same by name: "debug", "info", "warning" or "error"; false for anything else.
bool SetMinLogLevel(absl::string_view name);

/// Escapes `s` for inclusion inside a JSON string literal.
std::string JsonEscape(absl::string_view s);

}  // namespace edgeloop
