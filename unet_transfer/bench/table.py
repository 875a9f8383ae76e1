"""The benchmark's readable table (stdout), from the results dict bench.json holds."""

from __future__ import annotations

from unet_transfer.bench.common import PAPER, TARGETS


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_flops(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} FLOP/s"


def check(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return f"{'meets' if ok else 'misses'} {'>=' if higher_is_better else '<='} {target:g}"


def table(results: dict) -> str:
    device = results["device"]
    load = device.get("load_average_start")
    lines = [f"# unet-transfer bench on {device['name']} ({device['type']}, {device['threads']} threads, "
             f"native bf16 {device['native_bf16']}){' [QUICK]' if results['quick'] else ''}", ""]
    if device.get("busy"):
        share = device.get("cpu_busy_start")
        now = f"{share:.0%} of {device['cpu_count']} cores busy" if share is not None else f"load {load[0]:.1f} on {device['cpu_count']} cores"
        lines += [f"Other work was running ({now}): absolute timings "
                  "are pessimistic; rates are the best rounds and ratios come from alternating rounds.", ""]
    lines += ["## Verdict", ""]
    for label, v in results.get("verdict", {}).items():
        text = (f"- {label} size: the default path trains at {v['speedup_vs_bare_fp32']:.2f}x the bare fp32 NCHW loop: "
                f"{'meets' if v['meets'] else 'MISSES'} >= 1.0x")
        if "vs_keras" in v:
            text += (f"; {v['vs_keras']:.2f}x the paper's Keras stack: {'meets' if v['meets_keras_goal'] else 'MISSES'} "
                     f"the goal >= {v['keras_goal']:g}x")
        lines.append(text)
    if "keras" not in results:
        lines.append("- the paper's Keras stack: not measured (TensorFlow not installed; `pip install .[keras]`)")
    lines += ["", "## Speed settings chosen (fast.auto)", ""]
    for label, t in results["throughput"].items():
        lines.append(f"- {label}: {t['precision']}, channels_last {t['channels_last']}, compile {t['compile']} "
                     f"({t['fast'].get('chosen_by')}: {t['fast'].get('why')})")
    lines += ["", "## Training throughput (images/s; best of alternating rounds, the range beside it)", "",
              "| size | real path | bare fp32 NCHW | bare, same settings, real DataLoader | bare, same settings, "
              "fixed batch | speedup vs fp32 | framework overhead (vs same loop, same loader) | overhead vs fixed batch "
              "| achieved FLOP/s | of peak |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, t in results["throughput"].items():
        s, r = t["size"], t["images_per_s"]
        rounds = t.get("images_per_s_rounds", {})
        if t["fraction_of_bf16_peak"] is not None:
            peak = f"{100 * t['fraction_of_bf16_peak']:.1f}% of bf16"
        elif t.get("fraction_of_fp32_peak") is not None:
            cpu = t["cpu_fp32_peak"]
            peak = (f"{100 * t['fraction_of_fp32_peak']:.0f}% of ~{fmt_flops(cpu['flops_per_s'])} fp32 "
                    f"({cpu['cores']} x {cpu['ghz']:.1f} GHz x {cpu['flops_per_cycle']} {cpu['vectors']})")
        else:
            peak = "-"

        def ranged(name, r=r, rounds=rounds):
            low, high = rounds.get(name, (None, None))
            return f"{r[name]:.2f}" + (f" ({low:.2f}-{high:.2f})" if low is not None and high - low > 0.005 * high else "")

        lines.append(f"| {label} (w{s['width']}, {s['image_size']}px, batch {s['batch_size']}) | {ranged('real')} | "
                     f"{ranged('bare_fp32_nchw')} | {r['bare_same_loader']:.2f} | {r['bare_same']:.2f} | "
                     f"{t['speedup']:.2f}x ({check(t['speedup'], TARGETS['speedup'], True)}) | "
                     f"{100 * t['overhead']:+.1f}% ({check(t['overhead'], TARGETS['overhead'], False)}) | "
                     f"{100 * t['overhead_vs_fixed_batch']:+.1f}% | "
                     f"{fmt_flops(t['achieved_flops_per_s']['real'])} | {peak} |")
    if "concurrency" in results:
        c = results["concurrency"]
        lines += ["", f"## Runs at once on the GPU (paper size, batch {c['size']['batch_size']}, {c['precision']})", "",
                  "| runs at once | total images/s |", "|---|---|"]
        lines += [f"| {n} | {rate:.1f} |" for n, rate in c["images_per_s"].items()]
        lines += ["", f"runs_per_gpu={c['best_count']} gets through a study {c['gain']:.2f}x faster than one run at a "
                      "time; the paper-study estimate below uses it."]
    if "keras" in results:
        lines += ["", "## The paper's own stack (Keras on TensorFlow, same layer list, Adam 1e-4, same size and batch)", "",
                  "| size | Keras images/s | our real path | ratio |", "|---|---|---|---|"]
        for label, k in results["keras"].items():
            real = results["throughput"][label]["images_per_s"]["real"]
            threads = f", {k['threads']} threads" if k.get("threads") else ""
            lines.append(f"| {label} | {k['images_per_s']:.2f} (TensorFlow {k['tensorflow']}{threads}) | {real:.2f} | "
                         f"{real / k['images_per_s']:.2f}x |")
    lines += ["", "## Freezing: step/epoch time and memory vs all blocks trained", "",
              "| size | setting | trained blocks | step s | epoch s | time ratio | FLOP ratio | "
              "saved activations | memory ratio | CUDA peak/step |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, f in results["freeze"].items():
        for name, s in f["settings"].items():
            target = TARGETS.get(name)
            ratio = f"{s['time_ratio']:.2f}" + (f" ({check(s['time_ratio'], target, False)})" if target else "")
            lines.append(f"| {label} | {name} | {s['trainable_blocks']} | {s['step_s']:.3f} | {s['epoch_s']:.2f} | "
                         f"{ratio} | {s['flop_ratio']:.2f} | {fmt_bytes(s['saved_tensor_bytes'])} | "
                         f"{s['saved_tensor_ratio']:.2f} | {fmt_bytes(s['cuda_peak_bytes'])} |")
    first = next(iter(results["freeze"].values()))
    lines += ["", f"Epoch = the size's training fold ({first['epoch_images']} images at the first size) at the "
                  "measured step time. Memory: " + first["memory"] + ".", ""]
    lines += ["## Data loading (real train_dataloader, on-line augmentation, in the training process)", "",
              "| size | loader images/s | training images/s | ratio |", "|---|---|---|---|"]
    for label, d in results["data"].items():
        lines.append(f"| {label} | {d['images_per_s']:.0f} | {d['train_images_per_s']:.2f} | {d['ratio']:.0f}x "
                     f"({check(d['ratio'], TARGETS['data_ratio'], True)}) |")
    if "simulation" in results:
        sim, demo = results["simulation"], results["estimate"]["demo"]
        made = ", ".join(f"{s['dataset']} {s['images']} x {s['image_size']} px in {s['seconds']:.1f} s"
                         for s in sim["sets"].values())
        lines += ["", f"Simulated data: {made}; {100 * demo['simulation_share']:.1f}% of the demo study's estimate "
                      f"({check(demo['simulation_share'], TARGETS['simulation_share'], False)}); the ultrasound simulator "
                      f"makes {sim['paper_size_images_per_s']:.1f} images/s at 256 px."]
    fc = results["fixed_cost"]
    lines += ["", "## Fixed cost of one run", "",
              f"- in a sweep (run(cfg), max_epochs=0, in-process after a warm-up): {fc['in_sweep_s']:.2f} s "
              f"({check(fc['in_sweep_s'], TARGETS['in_sweep_s'], False)} s)",
              f"- per job of a real sweep (basic launcher, Hydra's work included): {fc['sweep_job_s']:.2f} s",
              f"- cold `python train.py ... trainer.max_epochs=0`: {fc['cold_start_s']:.2f} s", ""]
    a = results["agreement"]
    lines += ["## fp32 NCHW vs fast path (same seed, held-out Dice, mean over folds)", "",
              f"- {a['epochs']} epochs from {a['pretrained'] or 'scratch'}, {a['folds']} folds: fp32 NCHW "
              f"{a['dice_fp32_nchw']:.4f}, fast ({a['fast_precision']}, channels_last {a['fast_channels_last']}) "
              f"{a['dice_fast']:.4f}: difference {a['difference']:+.4f} ({'within' if a['within_tolerance'] else 'OUTSIDE'} "
              f"+-{a['tolerance']}); for scale, fp32 NCHW with another seed differs by {a['seed_difference']:+.4f}", ""]
    e = results["estimate"]
    paper = e["paper"]
    lines += ["## Estimated wall time on this device (from the measured rates)", "",
              f"- demo study (`make demo`): {60 * e['demo']['total_h']:.1f} min "
              f"(pretraining {60 * e['demo']['pretraining_h']:.1f} min, {e['demo']['detail']['runs']} runs "
              f"{60 * e['demo']['study_h']:.1f} min)",
              f"- paper study: {paper['total_h']:.1f} h = pretraining {paper['pretraining_h']:.1f} h + "
              + " + ".join(f"{name} {paper[f'{name}_h']:.1f} h" for name in PAPER["datasets"])
              + f" (each: {paper['detail']['ultrasound']['runs']} runs, "
              f"{paper['detail']['ultrasound']['trainings']} trainings of {paper['config']['epochs']} epochs x 600 "
              f"images at {paper['config']['image_size']}px, width {paper['config']['model']['width']})",
              "", f"Bench wall time: {results['wall_s']:.0f} s"]
    demo = results.get("check_demo")
    if demo:
        lines += ["", f"--check-demo: the demo study took {demo['measured_s'] / 60:.1f} min, the estimate said "
                      f"{demo['estimated_s'] / 60:.1f} min ({demo['ratio']:.2f}x: "
                      f"{'within' if demo['within_25_percent'] else 'OUTSIDE'} 25%)"]
    return "\n".join(lines)
