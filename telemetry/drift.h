#pragma once

// Drift statistics between a version's reference histogram and what devices measured, on the
// same bins. The tests and their defaults follow Evidently and NannyML (docs/telemetry.md).
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace edgeloop::telemetry {

/// Defaults: a feature drifts when PSI >= 0.2, or the Jensen-Shannon distance >= 0.1, or the
/// Kolmogorov-Smirnov p-value is below 0.05 after a Benjamini-Hochberg correction across the
/// model's features.
struct DriftThresholds {
  double psi = 0.2;
  double jensen_shannon = 0.1;
  double ks_alpha = 0.05;
  /// A histogram of fewer values is too small to judge: it is reported, but never drifted
  /// (two values in other bins than the reference's would give PSI above 10).
  int64_t min_count = 100;
};

/// Counts as proportions of their total, with empty bins filled as Evidently fills them so
/// that PSI stays finite: 0.0001, or the smallest non-empty proportion / 10^6 when that is
/// itself at most 0.0001. INVALID_ARGUMENT for no counts at all or a negative count.
absl::StatusOr<std::vector<double>> FilledProportions(const std::vector<double>& counts);

/// Population stability index: sum over bins of (a - r) * ln(a / r) on filled proportions.
/// INVALID_ARGUMENT when the histograms differ in bin count or one is empty.
absl::StatusOr<double> Psi(const std::vector<double>& reference, const std::vector<double>& actual);

/// Jensen-Shannon distance (the square root of the divergence, natural log, as
/// scipy.spatial.distance.jensenshannon computes it) between the normalised histograms; in
/// [0, sqrt(ln 2)].
absl::StatusOr<double> JensenShannonDistance(const std::vector<double>& reference,
                                             const std::vector<double>& actual);

/// The two-sample Kolmogorov-Smirnov test on binned data: D is the largest gap between the
/// two cumulative distributions at the bin edges (a lower bound of the statistic on the raw
/// samples, so the test is conservative), p the asymptotic p-value for the effective sample
/// size n*m/(n+m).
struct KsResult {
  double statistic = 0;
  double p_value = 1;
};
absl::StatusOr<KsResult> KolmogorovSmirnov(const std::vector<double>& reference,
                                           const std::vector<double>& actual);

/// Q_KS(lambda) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 lambda^2): the probability that the
/// Kolmogorov distribution exceeds lambda.
double KolmogorovTail(double lambda);

/// Which of `p_values` are rejected at false discovery rate `alpha` (Benjamini-Hochberg):
/// every p_(i) with i <= k, k the largest rank with p_(k) <= k * alpha / m.
std::vector<bool> BenjaminiHochberg(const std::vector<double>& p_values, double alpha);

}  // namespace edgeloop::telemetry
