package org.lazydit.demo

import android.app.Activity
import android.graphics.Bitmap
import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.ImageView
import android.widget.Spinner
import android.widget.TextView
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import kotlin.random.Random
import org.lazydit.core.ImagePixels
import org.lazydit.core.Manifest
import org.lazydit.core.RunResult

/** Pick a bundle and a class, generate, and see the image with the latency of every step. */
class MainActivity : Activity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()

    /** Owned by [worker]: only ever read or replaced on that thread. */
    private var loaded: LoadedBundle? = null

    private lateinit var bundleSpinner: Spinner
    private lateinit var classSpinner: Spinner
    private lateinit var generateButton: Button
    private lateinit var checkButton: Button
    private lateinit var statusText: TextView
    private lateinit var imageView: ImageView
    private lateinit var latencyText: TextView
    private lateinit var stepChart: StepChartView
    private var bundles: List<File> = emptyList()

    /** UI-thread view of what [loaded] can do, for enabling buttons. */
    private var ready = false
    private var hasGolden = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        bundleSpinner = findViewById(R.id.bundle_spinner)
        classSpinner = findViewById(R.id.class_spinner)
        generateButton = findViewById(R.id.generate_button)
        checkButton = findViewById(R.id.check_button)
        statusText = findViewById(R.id.status_text)
        imageView = findViewById(R.id.image_view)
        latencyText = findViewById(R.id.latency_text)
        stepChart = findViewById(R.id.step_chart)

        generateButton.setOnClickListener { generate() }
        checkButton.setOnClickListener { checkGolden() }

        bundles = Bundles.list(this)
        if (bundles.isEmpty()) {
            statusText.text = getString(R.string.no_bundles, Bundles.root(this).absolutePath)
            return
        }
        bundleSpinner.adapter =
            ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, bundles.map { it.name })
        bundleSpinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) {
                openBundle(bundles[position])
            }

            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
    }

    override fun onDestroy() {
        worker.execute {
            loaded?.close()
            loaded = null
        }
        worker.shutdown()
        super.onDestroy()
    }

    private fun openBundle(dir: File) {
        ready = false
        hasGolden = false
        setBusy(getString(R.string.loading_bundle, dir.name))
        worker.execute {
            loaded?.close()
            loaded = null
            val result = runCatching { LoadedBundle.open(dir) }
            loaded = result.getOrNull()
            runOnUiThread {
                result.fold(onSuccess = ::showBundle, onFailure = ::showError)
            }
        }
    }

    private fun showBundle(bundle: LoadedBundle) {
        val manifest = bundle.manifest
        val classes = (0 until maxOf(manifest.numClasses(), 1)).map { it.toString() }
        classSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, classes)
        classSpinner.setSelection(bundle.defaultLabel.coerceIn(0, classes.size - 1))
        statusText.text = getString(
            R.string.bundle_loaded,
            bundle.folder.name(),
            manifest.steps().size,
            manifest.lazySteps().size,
            bundle.loadMillis,
        )
        if (manifest.timingOnly()) {
            statusText.append("\n" + getString(R.string.timing_only))
        }
        ready = true
        hasGolden = bundle.folder.hasGolden()
        setIdle()
    }

    private fun generate() {
        val label = classSpinner.selectedItemPosition
        val seed = Random.nextLong()
        setBusy(getString(R.string.generating))
        worker.execute {
            val result = runCatching {
                val bundle = checkNotNull(loaded) { "no bundle is loaded" }
                bundle.manifest to bundle.generate(label, seed)
            }
            runOnUiThread {
                result.fold(onSuccess = { (manifest, run) -> showImage(manifest, run, seed) }, onFailure = ::showError)
                setIdle()
            }
        }
    }

    private fun checkGolden() {
        setBusy(getString(R.string.checking))
        worker.execute {
            val result = runCatching { checkNotNull(loaded) { "no bundle is loaded" }.checkGolden() }
            runOnUiThread {
                result.fold(onSuccess = { statusText.text = it.summary() }, onFailure = ::showError)
                setIdle()
            }
        }
    }

    private fun showImage(manifest: Manifest, result: RunResult, seed: Long) {
        imageView.setImageBitmap(upscaled(ImagePixels.of(result.image(), manifest.image())))
        val steps = result.stepMillis()
        latencyText.text = getString(R.string.latency, result.totalMillis(), steps.sum(), result.decodeMillis(), seed)
        stepChart.setSteps(steps, manifest.steps().map { it.isLazy() }.toBooleanArray())
    }

    /** Nearest-neighbour upscaling, so an 8x8 digit shows crisp pixels instead of a blur. */
    private fun upscaled(pixels: ImagePixels): Bitmap {
        val small = Bitmap.createBitmap(pixels.argb(), pixels.width(), pixels.height(), Bitmap.Config.ARGB_8888)
        val factor = maxOf(1, TARGET_PIXELS / maxOf(pixels.width(), pixels.height()))
        return Bitmap.createScaledBitmap(small, pixels.width() * factor, pixels.height() * factor, false)
    }

    private fun showError(error: Throwable) {
        statusText.text = getString(R.string.failed, error.message ?: error.toString())
        setIdle()
    }

    private fun setBusy(message: String) {
        statusText.text = message
        generateButton.isEnabled = false
        checkButton.isEnabled = false
        bundleSpinner.isEnabled = false
    }

    private fun setIdle() {
        generateButton.isEnabled = ready
        checkButton.isEnabled = ready && hasGolden
        bundleSpinner.isEnabled = true
    }

    private companion object {
        const val TARGET_PIXELS = 512
    }
}
