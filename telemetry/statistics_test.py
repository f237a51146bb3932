#!/usr/bin/env python3
"""Prints the expected values statistics_test.cc checks, from a plain implementation of each
formula (no shared code with telemetry/): python3 telemetry/statistics_test.py"""
import math


def filled(counts):
    total = sum(counts)
    p = [c / total for c in counts]
    smallest = min(x for x in p if x > 0)
    fill = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return [x if x > 0 else fill for x in p]


def psi(reference, actual):
    r, a = filled(reference), filled(actual)
    return sum((y - x) * math.log(y / x) for x, y in zip(r, a))


def js(p, q):
    p = [x / sum(p) for x in p]
    q = [x / sum(q) for x in q]
    m = [(a + b) / 2 for a, b in zip(p, q)]
    kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)
    return math.sqrt(0.5 * kl(p, m) + 0.5 * kl(q, m))


def kolmogorov_tail(lam):
    return 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 200))


def wilson(successes, trials, z=1.959963984540054):
    p = successes / trials
    center = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials ** 2))
    return center - half, center + half


print("psi", repr(psi([10, 20, 30, 40], [40, 30, 20, 10])))
print("psi empty bin", repr(psi([0, 50, 50], [10, 45, 45])))
print("psi tiny bin", repr(psi([1, 99999, 0], [0, 50000, 50000])))
print("js", repr(js([1, 0], [0.5, 0.5])), repr(js([10, 20, 30, 40], [40, 30, 20, 10])))
print("Q(1), Q(1.36)", repr(kolmogorov_tail(1.0)), repr(kolmogorov_tail(1.36)))
e = math.sqrt(40 * 40 / 80)
print("ks p", repr(kolmogorov_tail((e + 0.12 + 0.11 / e) * 0.25)))
print("wilson 8/10", wilson(8, 10))
