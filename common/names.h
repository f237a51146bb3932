#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"

namespace edgeloop {

/// Model names: 1–63 characters of [a-z0-9._-], starting and ending with a letter or digit,
/// so they are safe in URLs, file names and Prometheus labels without escaping.
absl::Status ValidateModelName(absl::string_view name);

/// Alias names follow the model-name rule and must not be all digits, so a path segment is
/// unambiguously a version number or an alias.
absl::Status ValidateAliasName(absl::string_view alias);

/// Labels as Kubernetes has them: at most 64, keys 1–63 of [A-Za-z0-9._/-] starting and ending
/// alphanumeric, values up to 256 printable characters.
absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels);

}  // namespace edgeloop
