package org.lazydit.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.util.List;

/**
 * One benchmark of one bundle on one backend and device. The minibench metric names come first so
 * numbers line up with what phone people already read; ours follow.
 *
 * @param goldenPsnrDb the worst PSNR of a golden check run before timing, or null if none ran
 */
public record BenchRecord(String bundle, String backend, String device, double modelLoadMillis, BenchResult result,
        List<Integer> lazySteps, Double goldenPsnrDb) {
    public BenchRecord {
        lazySteps = List.copyOf(lazySteps);
    }

    public JsonObject toJson() {
        JsonObject o = new JsonObject();
        o.addProperty("avg_inference_latency(ms)", result.meanMillis());
        o.addProperty("trimmean_inference_latency(ms)", result.trimmedMeanMillis());
        o.addProperty("model_load_time(ms)", modelLoadMillis);
        o.addProperty("median_latency(ms)", result.medianMillis());
        o.addProperty("p90_latency(ms)", result.p90Millis());
        o.add("per_step_latency(ms)", numbers(result.stepMeanMillis()));
        o.addProperty("decode_latency(ms)", result.decodeMeanMillis());
        double[] images = result.imageMillis().stream().mapToDouble(Double::doubleValue).toArray();
        o.add("inference_latencies(ms)", numbers(images));
        JsonArray lazy = new JsonArray();
        lazySteps.forEach(lazy::add);
        o.add("lazy_steps", lazy);
        o.addProperty("warmup", result.warmup());
        o.addProperty("runs", result.runs());
        if (goldenPsnrDb != null) {
            o.addProperty("golden_psnr(dB)", goldenPsnrDb);
        }
        o.addProperty("backend", backend);
        o.addProperty("bundle", bundle);
        o.addProperty("device", device);
        return o;
    }

    private static JsonArray numbers(double[] values) {
        JsonArray a = new JsonArray();
        for (double v : values) {
            a.add(v);
        }
        return a;
    }
}
