"""The HTTP and TCP runs are repeated `rounds` times with the paths in turn (the load of
the machine's neighbours moves a path's numbers by up to a third between runs); each path
keeps its best run."""


def keep_best(results, key, r, metric):
    """Stores run `r` under results[key] if it beats the run already there on `metric`; every
    round's value stays listed in "rounds". Returns whether `r` was kept."""
    prev = results.get(key)
    r["rounds"] = (prev.get("rounds", []) if prev else []) + [r.get(metric)]
    if prev is None or (r.get(metric) or 0) > (prev.get(metric) or 0):
        results[key] = r
        return True
    prev["rounds"] = r["rounds"]
    return False


def round_label(rnd, rounds):
    return " (round %d/%d)" % (rnd + 1, rounds) if rounds > 1 else ""
