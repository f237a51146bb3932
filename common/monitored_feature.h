#pragma once

// The features devices monitor and how each is computed from a model input: one definition
// that the compiler (a version's reference, from its validation set) and the agent (every
// call) both use, so a device's histograms and the reference it is compared with are binned
// by the same code. Part of the device protocol, like target classes.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop {

/// The default features for a model's inputs (name and static shape): every element of an
/// input of up to 64 elements; the per-channel mean of an image-like [1, C, H, W] input;
/// the whole tensor's mean, standard deviation, minimum and maximum otherwise.
std::vector<v1::MonitoredFeature> DefaultMonitoredFeatures(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& inputs);

/// At most this many features per version: each costs 12 counts in every window.
inline constexpr int kMaxMonitoredFeatures = 256;

/// A feature from its name, the syntax DefaultMonitoredFeatures names them in: `INPUT[k]`
/// (element k), `INPUT.mean[c=k]` (channel k's mean), `INPUT.mean`, `.std`, `.min`, `.max`.
/// INVALID_ARGUMENT for anything else.
absl::StatusOr<v1::MonitoredFeature> ParseMonitoredFeature(const std::string& name);

/// OK when every feature names one of `inputs` and fits its shape (dimensions < 0 are
/// unknown: only whole-tensor features fit them), names are unique, and there are at most
/// kMaxMonitoredFeatures; INVALID_ARGUMENT naming the first that does not.
absl::Status CheckMonitoredFeatures(
    const std::vector<v1::MonitoredFeature>& features,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& inputs);

/// OK when a reference is well formed, so that devices and the server can bin on it: at most
/// kMaxMonitoredFeatures features, each with 2 to 32 finite non-decreasing edges and one count
/// more than edges; a classifier's class counts (2 to 4096) and kConfidenceBins confidence
/// counts, or a regressor's prediction edges and counts (or neither); counts non-negative; correct
/// <= labelled. INVALID_ARGUMENT saying what is wrong otherwise. A reference comes from a sandboxed
/// compiler run or from devices, so nothing in it is trusted.
absl::Status CheckReferenceStatistics(const v1::ReferenceStatistics& reference);

/// OK for 2 to 32 finite, non-decreasing bin edges; INVALID_ARGUMENT starting with `what`.
absl::Status CheckEdges(const google::protobuf::RepeatedField<double>& edges,
                        absl::string_view what);

/// The feature's value for one input tensor of `shape` (row-major `data`). NaN when the
/// feature does not fit the tensor (an index past its end, CHANNEL_MEAN of a tensor that is
/// not [1, C, H, W]) or the data hold NaN. No allocation: the agent calls it on every call.
double FeatureValue(const v1::MonitoredFeature& feature, const float* data,
                    const std::vector<int64_t>& shape);

/// The bin of `value` on a reference's edges e[0..n-1]: 0 below e[0], k for
/// e[k-1] <= value < e[k], n-1 for e[n-2] <= value <= e[n-1] (the last inner bin is closed),
/// n above e[n-1]; so n + 1 bins in all. NaN goes to no bin: -1.
int BinOf(const double* edges, int n, double value);

/// Decile edges of `values` (not empty): 11 numbers, the minimum first, the maximum last, the
/// deciles between interpolated linearly (numpy's default quantile).
std::vector<double> DecileEdges(std::vector<double> values);

/// The histogram of `values` on `edges` (BinOf): edges.size() + 1 counts; NaN is not counted.
std::vector<int64_t> BinCounts(const std::vector<double>& edges, const std::vector<double>& values);

}  // namespace edgeloop
