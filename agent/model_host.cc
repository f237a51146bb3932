#include "agent/model_host.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/thread_priority.h"
#include "common/status.h"

namespace edgeloop::agent {
namespace {


std::string Dims(const int64_t* dims, int rank) {
  return absl::StrCat("[", absl::StrJoin(dims, dims + rank, ", "), "]");
}

void Describe(const elm_tensor& t, lv1::Tensor* out) {
  out->set_name(t.name);
  out->set_dtype(lv1::FLOAT32);
  for (int k = 0; k < t.rank; ++k) out->add_dims(t.dims[k]);
}

}  // namespace

ModelHost::Slot* ModelHost::Find(const std::string& model) const {
  std::shared_lock lock(slots_mu_);
  auto it = slots_.find(model);
  return it == slots_.end() ? nullptr : it->second.get();
}

ModelHost::Slot& ModelHost::FindOrCreate(const std::string& model) {
  std::unique_lock lock(slots_mu_);
  std::unique_ptr<Slot>& slot = slots_[model];
  if (!slot) slot = std::make_unique<Slot>();
  return *slot;
}

void ModelHost::SetRollbackPolicy(const RollbackPolicy& policy, RollbackCallback on_rollback) {
  std::lock_guard lock(swap_mu_);
  policy_ = policy;
  on_rollback_ = std::move(on_rollback);
}

std::shared_ptr<ServingModel> ModelHost::Activate(std::shared_ptr<ServingModel> model) {
  NormalPriority normal;  // takes locks calls take (see thread_priority.h)
  Slot& slot = FindOrCreate(model->ref().model());
  std::lock_guard lock(swap_mu_);
  std::shared_ptr<ServingModel> old = slot.active.exchange(std::move(model));
  slot.probation = old != nullptr && policy_.enabled;
  std::shared_ptr<ServingModel> released;
  if (old) released = std::exchange(slot.previous, std::move(old));
  if (slot.draining) {
    std::lock_guard drain(slot.drain_mu);
    slot.draining = false;
    slot.drained.notify_all();
  }
  return released;
}

absl::Status ModelHost::Drain(const std::string& model, absl::Duration timeout,
                              int max_waiting) {
  NormalPriority normal;  // takes locks calls take (see thread_priority.h)
  Slot* slot = Find(model);
  if (slot == nullptr) return absl::OkStatus();
  {
    std::lock_guard drain(slot->drain_mu);
    slot->max_waiting = max_waiting;
    slot->draining = true;  // before anything is unloaded: a call finding none waits
  }
  // The slot's references are the only ones once the running calls are done.
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    {
      std::lock_guard lock(swap_mu_);
      std::shared_ptr<ServingModel> active = slot->active.load();
      if ((!active || active.use_count() <= 2) &&
          (!slot->previous || slot->previous.use_count() <= 1)) {
        slot->active.exchange(nullptr);
        slot->previous = nullptr;
        return absl::OkStatus();  // `active` goes out of scope: the old module is unloaded
      }
    }
    if (absl::Now() > deadline) {
      std::lock_guard drain(slot->drain_mu);
      slot->draining = false;
      slot->drained.notify_all();
      return absl::DeadlineExceededError("calls on the old module did not finish");
    }
    absl::SleepFor(absl::Microseconds(200));
  }
}

void ModelHost::EndDrain(const std::string& model) {
  NormalPriority normal;  // takes locks calls take (see thread_priority.h)
  Slot* slot = Find(model);
  if (slot == nullptr) return;
  std::lock_guard drain(slot->drain_mu);
  slot->draining = false;
  slot->drained.notify_all();
}

absl::StatusOr<std::shared_ptr<ServingModel>> ModelHost::Acquire(Slot& slot,
                                                                 const std::string& model) {
  for (;;) {
    if (slot.draining.load()) {
      std::unique_lock drain(slot.drain_mu);
      if (slot.draining) {
        if (slot.waiting >= slot.max_waiting) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "model \"", model, "\" is being swapped and ", slot.waiting, " calls already wait"));
        }
        ++slot.waiting;
        const bool released = slot.drained.wait_for(drain, std::chrono::seconds(30),
                                                     [&] { return !slot.draining.load(); });
        --slot.waiting;
        if (!released) {
          return absl::UnavailableError(absl::StrCat("model \"", model, "\" is being swapped"));
        }
      }
    }
    std::shared_ptr<ServingModel> active = slot.active.load();
    if (active) return active;
    if (!slot.draining.load()) {
      return absl::UnavailableError(absl::StrCat("model \"", model, "\" has no module loaded"));
    }
  }
}

void ModelHost::Watch(Slot& slot, const std::shared_ptr<ServingModel>& model) {
  const ServingModel::Stats now = model->stats();
  if (now.calls < policy_.min_calls) return;
  v1::ModuleRef refused;
  std::string why;
  RollbackCallback callback;
  {
    std::lock_guard lock(swap_mu_);
    // Judged once: by whichever call gets here first while this module is still active.
    if (!slot.probation || slot.active.load() != model || slot.previous == nullptr) return;
    const ServingModel::Stats before = slot.previous->stats();
    const double error_rate = static_cast<double>(now.errors) / now.calls;
    if (error_rate > policy_.max_error_rate) {
      why = absl::StrCat("error rate ", error_rate * 100, "% over ", now.calls,
                         " calls is above the limit of ", policy_.max_error_rate * 100, "%");
    } else if (before.calls >= policy_.min_calls &&
               now.mean_run_us > policy_.max_latency_ratio * before.mean_run_us &&
               now.mean_run_us > before.mean_run_us + policy_.latency_slack_us) {
      why = absl::StrCat("mean run time ", now.mean_run_us, " us over ", now.calls,
                         " calls is more than ", policy_.max_latency_ratio,
                         "x the previous module's ", before.mean_run_us, " us");
    } else {
      if (now.calls >= policy_.min_calls * 10) slot.probation = false;  // it proved itself
      return;
    }
    slot.probation = false;
    slot.previous = slot.active.exchange(std::move(slot.previous));
    refused = model->ref();
    callback = on_rollback_;
  }
  if (callback) callback(refused, why);
}

absl::Status ModelHost::Rollback(const std::string& model) {
  NormalPriority normal;  // takes locks calls take (see thread_priority.h)
  Slot* slot = Find(model);
  std::lock_guard lock(swap_mu_);
  if (slot == nullptr || slot->previous == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("model \"", model, "\" has no previous module to roll back to"));
  }
  slot->previous = slot->active.exchange(std::move(slot->previous));
  return absl::OkStatus();
}

std::shared_ptr<ServingModel> ModelHost::Active(const std::string& model) const {
  NormalPriority normal;  // takes locks calls take (see thread_priority.h)
  Slot* slot = Find(model);
  return slot ? slot->active.load() : nullptr;
}

std::shared_ptr<ServingModel> ModelHost::Previous(const std::string& model) const {
  NormalPriority normal;  // takes locks calls take (see thread_priority.h)
  Slot* slot = Find(model);
  if (slot == nullptr) return nullptr;
  std::lock_guard lock(swap_mu_);
  return slot->previous;
}

std::vector<ModelHost::Loaded> ModelHost::LoadedModels() const {
  NormalPriority normal;  // takes locks calls take (see thread_priority.h)
  std::shared_lock lock(slots_mu_);
  std::lock_guard swap(swap_mu_);
  std::vector<Loaded> loaded;
  for (const auto& [name, slot] : slots_) {
    if (auto active = slot->active.load()) loaded.push_back({name, active, slot->previous});
  }
  return loaded;
}

absl::StatusOr<lv1::PredictResponse> ModelHost::Predict(const lv1::PredictRequest& request) {
  Slot* slot = Find(request.model());
  if (slot == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("model \"", request.model().substr(0, 128), "\" is not served here"));
  }
  // Held for the whole call: a swap meanwhile does not unload it under us.
  ASSIGN_OR_RETURN(std::shared_ptr<ServingModel> model, Acquire(*slot, request.model()));
  const elm_module& m = model->module();
  if (request.inputs_size() != static_cast<int>(m.num_inputs)) {
    return absl::InvalidArgumentError(absl::StrCat("model \"", request.model(), "\" takes ",
                                                   m.num_inputs, " input(s), got ",
                                                   request.inputs_size()));
  }
  std::vector<const void*> inputs(m.num_inputs);
  for (uint32_t k = 0; k < m.num_inputs; ++k) {
    const elm_tensor& want = m.inputs[k];
    // By name when the caller names inputs, else in the module's order.
    const lv1::Tensor* given = nullptr;
    for (const lv1::Tensor& t : request.inputs()) {
      if (t.name() == want.name) given = &t;
    }
    if (given == nullptr && request.inputs(k).name().empty()) given = &request.inputs(k);
    if (given == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("missing input \"", want.name, "\""));
    }
    const std::vector<int64_t> dims(given->dims().begin(), given->dims().end());
    if (given->dtype() != lv1::FLOAT32 ||
        dims != std::vector<int64_t>(want.dims, want.dims + want.rank)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input \"", want.name, "\" must be FLOAT32 ", Dims(want.dims, want.rank), "; got ",
          lv1::DataType_Name(given->dtype()), " [", absl::StrJoin(dims, ", "), "]"));
    }
    if (static_cast<int64_t>(given->data().size()) != Elements(want) * 4) {
      return absl::InvalidArgumentError(absl::StrCat("input \"", want.name, "\" needs ",
                                                     Elements(want) * 4, " bytes of data, got ",
                                                     given->data().size()));
    }
    inputs[k] = given->data().data();
  }
  lv1::PredictResponse response;
  std::vector<void*> outputs(m.num_outputs);
  for (uint32_t k = 0; k < m.num_outputs; ++k) {
    lv1::Tensor* out = response.add_outputs();
    Describe(m.outputs[k], out);
    out->mutable_data()->resize(Elements(m.outputs[k]) * 4);
    outputs[k] = out->mutable_data()->data();
  }
  // Protobuf strings are not aligned for floats; the module only needs 4-byte alignment,
  // which string data and our copies have, so run in place.
  const absl::Time started = absl::Now();
  const absl::Status ran = model->Run(inputs.data(), outputs.data());
  const absl::Time ended = absl::Now();
  model->Record(ended - started, ran.ok());
  // What the version's telemetry counts of this call (per-thread counters, no lock).
  WindowCounters* counters = model->counters();
  int64_t predicted =
      counters ? counters->Record(inputs.data(), outputs.data(), ended - started, ran.ok()) : -1;
  if (slot->probation.load(std::memory_order_relaxed)) Watch(*slot, model);
  RETURN_IF_ERROR(ran);
  if (shadow_ != nullptr) shadow_->Offer(model, inputs.data(), outputs.data());
  if (m.num_outputs > 0 && (counters == nullptr || !counters->classifier())) {
    const std::string& data = response.outputs(0).data();
    const float* values = reinterpret_cast<const float*>(data.data());
    predicted = std::max_element(values, values + data.size() / 4) - values;
  }
  response.set_request_id(predictions_.Record({counters ? counters->id() : 0, predicted, ended}));
  response.set_model_version(model->ref().version());
  response.set_module_digest(model->ref().digest());
  return response;
}

absl::StatusOr<lv1::FeedbackResponse> ModelHost::Feedback(const lv1::FeedbackRequest& request) {
  const std::optional<PredictionLog::Entry> p = predictions_.Find(request.request_id());
  if (!p.has_value()) {
    return absl::NotFoundError(absl::StrCat("no recent prediction \"",
                                            request.request_id().substr(0, 64), "\""));
  }
  if (p->counters != 0 && on_label_) on_label_(p->counters, p->predicted, request.label(), p->at);
  lv1::FeedbackResponse response;
  response.set_correct(p->predicted == request.label());
  return response;
}

lv1::ListModelsResponse ModelHost::List() const {
  lv1::ListModelsResponse response;
  for (const Loaded& loaded : LoadedModels()) {
    const std::shared_ptr<ServingModel>& model = loaded.active;
    lv1::LocalModel* out = response.add_models();
    out->set_name(loaded.model);
    out->set_version(model->ref().version());
    out->set_module_digest(model->ref().digest());
    out->set_target(model->ref().target());
    for (uint32_t k = 0; k < model->module().num_inputs; ++k)
      Describe(model->module().inputs[k], out->add_inputs());
    for (uint32_t k = 0; k < model->module().num_outputs; ++k)
      Describe(model->module().outputs[k], out->add_outputs());
    if (loaded.previous) out->set_previous_version(loaded.previous->ref().version());
  }
  return response;
}

}  // namespace edgeloop::agent
