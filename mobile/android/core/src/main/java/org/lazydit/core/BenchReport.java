package org.lazydit.core;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** The benchmark report file: a JSON list of records, like minibench's benchmark_results.json. */
public final class BenchReport {
    public static final String FILE_NAME = "lazydit_benchmark.json";

    private BenchReport() {}

    public static String toJson(List<BenchRecord> records) {
        JsonArray a = new JsonArray();
        for (BenchRecord r : records) {
            a.add(r.toJson());
        }
        return new GsonBuilder().setPrettyPrinting().create().toJson(a);
    }

    public static void write(Path file, List<BenchRecord> records) throws IOException {
        Files.write(file, toJson(records).getBytes(StandardCharsets.UTF_8));
    }
}
