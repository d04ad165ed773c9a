package org.lazydit.demo

import android.app.Activity
import android.os.Bundle
import android.util.Log
import android.widget.TextView
import java.io.File
import kotlin.concurrent.thread
import org.lazydit.core.Bench
import org.lazydit.core.BenchRecord
import org.lazydit.core.BenchReport

/**
 * Headless benchmark for adb, minibench style:
 *
 *     adb shell am start -n org.lazydit.demo/.BenchmarkActivity \
 *         --es bundle_dir /sdcard/Android/data/org.lazydit.demo/files/BUNDLE --ei runs 10 --ei warmup 2
 *
 * Checks the golden vectors first (skip with --ez verify false), then times W warm-up and N runs,
 * writes files/lazydit_benchmark.json and logs its path under the tag "LazyDiTBench".
 */
class BenchmarkActivity : Activity() {
    private lateinit var statusText: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        statusText = TextView(this).apply { setPadding(32, 32, 32, 32) }
        setContentView(statusText)

        val dir = intent.getStringExtra(EXTRA_BUNDLE_DIR)
        if (dir.isNullOrEmpty()) {
            report("missing bundle folder: pass --es $EXTRA_BUNDLE_DIR /path/to/bundle", error = true)
            finish()
            return
        }
        val runs = intent.getIntExtra(EXTRA_RUNS, 10)
        val warmup = intent.getIntExtra(EXTRA_WARMUP, 2)
        val verify = intent.getBooleanExtra(EXTRA_VERIFY, true)
        val output = File(filesDir, BenchReport.FILE_NAME)
        output.delete()
        statusText.text = getString(R.string.benchmark_running, File(dir).name, warmup, runs)

        thread(name = "lazydit-benchmark") {
            try {
                val record = benchmark(File(dir), warmup, runs, verify)
                BenchReport.write(output.toPath(), listOf(record))
                Log.i(TAG, BenchReport.toJson(listOf(record)))
                report(getString(R.string.benchmark_done, output.absolutePath), error = false)
            } catch (e: Exception) {
                report("benchmark of $dir failed: ${e.message}", error = true, cause = e)
            }
            runOnUiThread { finish() }
        }
    }

    private fun benchmark(dir: File, warmup: Int, runs: Int, verify: Boolean): BenchRecord =
        LoadedBundle.open(dir).use { bundle ->
            Log.i(TAG, "loaded ${bundle.folder.name()} in ${bundle.loadMillis} ms")
            val psnr = if (verify && bundle.folder.hasGolden()) {
                val check = bundle.checkGolden()
                Log.println(if (check.passed()) Log.INFO else Log.WARN, TAG, check.summary())
                check.worstPsnrDb()
            } else {
                null
            }
            val result = Bench.run(bundle.runner, bundle.benchmarkInput(), warmup, runs)
            BenchRecord(
                bundle.folder.name(),
                bundle.backend.name(),
                Bundles.device(),
                bundle.loadMillis,
                result,
                bundle.manifest.lazySteps(),
                psnr,
            )
        }

    private fun report(message: String, error: Boolean, cause: Throwable? = null) {
        if (error) Log.e(TAG, message, cause) else Log.i(TAG, message)
        runOnUiThread { statusText.text = message }
    }

    companion object {
        const val TAG = "LazyDiTBench"
        const val EXTRA_BUNDLE_DIR = "bundle_dir"
        const val EXTRA_RUNS = "runs"
        const val EXTRA_WARMUP = "warmup"
        const val EXTRA_VERIFY = "verify"
    }
}
