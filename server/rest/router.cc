#include "server/rest/router.h"

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace edgeloop::server::rest {
namespace {

std::vector<std::string> Segments(absl::string_view path) {
  return absl::StrSplit(path, '/', absl::SkipEmpty());
}

// Matches one path segment against one pattern segment, capturing "{name}" parts.
bool MatchSegment(const std::string& pattern, const std::string& segment,
                  std::map<std::string, std::string>* params) {
  if (pattern.empty() || pattern.front() != '{') return pattern == segment;
  size_t close = pattern.find('}');
  std::string name = pattern.substr(1, close - 1);
  std::string suffix = pattern.substr(close + 1);  // e.g. ":revoke"
  if (!absl::EndsWith(segment, suffix) || segment.size() <= suffix.size()) return false;
  std::string value = PercentDecode(segment.substr(0, segment.size() - suffix.size()));
  if (!suffix.empty() && value.find(':') != std::string::npos) return false;
  (*params)[name] = value;
  return true;
}

}  // namespace

void Router::Add(std::string method, std::string pattern, RouteKind kind, RestHandler handler) {
  Route route{std::move(method), pattern, kind, std::move(handler), Segments(pattern)};
  routes_.push_back(std::move(route));
}

Router::Match Router::Find(absl::string_view method, absl::string_view path) const {
  Match result;
  std::vector<std::string> segments = Segments(path);
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    bool ok = true;
    for (size_t i = 0; ok && i < segments.size(); ++i)
      ok = MatchSegment(route.segments[i], segments[i], &params);
    if (!ok) continue;
    if (route.method != method) {
      result.other_method = true;
      continue;
    }
    result.route = &route;
    result.params = std::move(params);
    return result;
  }
  return result;
}

std::string PercentDecode(absl::string_view s, bool plus_as_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else if (s[i] == '+' && plus_as_space) {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> ParseQuery(absl::string_view query) {
  std::map<std::string, std::string> out;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    out[PercentDecode(kv.first, true)] = PercentDecode(kv.second, true);
  }
  return out;
}

}  // namespace edgeloop::server::rest
