#include "telemetry/drift.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace edgeloop::telemetry {
namespace {

absl::Status SameBins(const std::vector<double>& reference, const std::vector<double>& actual) {
  if (reference.size() != actual.size()) {
    return absl::InvalidArgumentError(absl::StrCat("histograms of ", reference.size(), " and ",
                                                   actual.size(), " bins cannot be compared"));
  }
  if (reference.empty()) return absl::InvalidArgumentError("a histogram without bins");
  return absl::OkStatus();
}

absl::StatusOr<double> Total(const std::vector<double>& counts) {
  double total = 0;
  for (const double c : counts) {
    if (!(c >= 0) || !std::isfinite(c)) {
      return absl::InvalidArgumentError(absl::StrCat("a bin count of ", c));
    }
    total += c;
  }
  if (total <= 0) return absl::InvalidArgumentError("a histogram with no counts");
  return total;
}

}  // namespace

absl::StatusOr<std::vector<double>> FilledProportions(const std::vector<double>& counts) {
  ASSIGN_OR_RETURN(const double total, Total(counts));
  std::vector<double> p(counts.size());
  double smallest = 1;
  for (size_t k = 0; k < counts.size(); ++k) {
    p[k] = counts[k] / total;
    if (p[k] > 0) smallest = std::min(smallest, p[k]);
  }
  const double fill = smallest <= 0.0001 ? smallest / 1e6 : 0.0001;
  for (double& v : p) {
    if (v == 0) v = fill;
  }
  return p;
}

absl::StatusOr<double> Psi(const std::vector<double>& reference,
                           const std::vector<double>& actual) {
  RETURN_IF_ERROR(SameBins(reference, actual));
  ASSIGN_OR_RETURN(const std::vector<double> r, FilledProportions(reference));
  ASSIGN_OR_RETURN(const std::vector<double> a, FilledProportions(actual));
  double psi = 0;
  for (size_t k = 0; k < r.size(); ++k) psi += (a[k] - r[k]) * std::log(a[k] / r[k]);
  return psi;
}

absl::StatusOr<double> JensenShannonDistance(const std::vector<double>& reference,
                                             const std::vector<double>& actual) {
  RETURN_IF_ERROR(SameBins(reference, actual));
  ASSIGN_OR_RETURN(const double rt, Total(reference));
  ASSIGN_OR_RETURN(const double at, Total(actual));
  double divergence = 0;
  for (size_t k = 0; k < reference.size(); ++k) {
    const double p = reference[k] / rt, q = actual[k] / at, m = (p + q) / 2;
    if (p > 0) divergence += 0.5 * p * std::log(p / m);
    if (q > 0) divergence += 0.5 * q * std::log(q / m);
  }
  return std::sqrt(std::max(divergence, 0.0));
}

double KolmogorovTail(double lambda) {
  if (lambda <= 0) return 1;
  // The series converges fast above ~0.3; below, the tail is 1 to double precision.
  if (lambda < 0.2) return 1;
  double sum = 0;
  for (int k = 1; k <= 100; ++k) {
    const double term = std::exp(-2.0 * k * k * lambda * lambda);
    sum += (k % 2 == 1 ? term : -term);
    if (term < 1e-17) break;
  }
  return std::clamp(2 * sum, 0.0, 1.0);
}

absl::StatusOr<KsResult> KolmogorovSmirnov(const std::vector<double>& reference,
                                           const std::vector<double>& actual) {
  RETURN_IF_ERROR(SameBins(reference, actual));
  ASSIGN_OR_RETURN(const double n, Total(reference));
  ASSIGN_OR_RETURN(const double m, Total(actual));
  KsResult result;
  double cr = 0, ca = 0;
  for (size_t k = 0; k < reference.size(); ++k) {
    cr += reference[k] / n;
    ca += actual[k] / m;
    result.statistic = std::max(result.statistic, std::abs(cr - ca));
  }
  // Stephens' small-sample correction of the asymptotic distribution (as Numerical Recipes
  // uses it for the two-sample test).
  const double effective = std::sqrt(n * m / (n + m));
  result.p_value = KolmogorovTail((effective + 0.12 + 0.11 / effective) * result.statistic);
  return result;
}

std::vector<bool> BenjaminiHochberg(const std::vector<double>& p_values, double alpha) {
  const size_t m = p_values.size();
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return p_values[a] < p_values[b]; });
  size_t k = 0;  // largest rank (1-based) with p_(k) <= k * alpha / m
  for (size_t rank = 1; rank <= m; ++rank) {
    if (p_values[order[rank - 1]] <= static_cast<double>(rank) * alpha / static_cast<double>(m))
      k = rank;
  }
  std::vector<bool> rejected(m, false);
  for (size_t rank = 1; rank <= k; ++rank) rejected[order[rank - 1]] = true;
  return rejected;
}

}  // namespace edgeloop::telemetry
