#include "cli/command.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"

namespace edgeloop::cli {

using google::protobuf::util::TimeUtil;

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  std::string s = TimeUtil::ToString(t);
  return s.substr(0, 19) + "Z";
}

std::string TimeMs(int64_t unix_ms) {
  google::protobuf::Timestamp t;
  t.set_seconds(unix_ms / 1000);
  return Time(t);
}

std::string Shape(const v1::TensorSpec& spec) {
  std::vector<std::string> dims;
  for (int i = 0; i < spec.shape_size(); ++i) {
    dims.push_back(spec.shape(i) >= 0 ? std::to_string(spec.shape(i))
                                      : (spec.dim_names(i).empty() ? "?" : spec.dim_names(i)));
  }
  return absl::StrCat(spec.name(), ":", spec.dtype(), "[", absl::StrJoin(dims, ","), "]");
}

std::string Pairs(const google::protobuf::Map<std::string, std::string>& m) {
  std::map<std::string, std::string> sorted(m.begin(), m.end());
  return sorted.empty() ? "-" : absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

absl::Status Need(const Args& args, size_t words, const char* usage) {
  if (args.words.size() < words)
    return absl::InvalidArgumentError(absl::StrCat("usage: edgeloop ", usage));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Number(const std::string& text, const char* what) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || n <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a positive number, got \"", text, "\""));
  }
  return n;
}

}  // namespace edgeloop::cli
