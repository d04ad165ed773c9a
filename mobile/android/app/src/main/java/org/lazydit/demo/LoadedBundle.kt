package org.lazydit.demo

import java.io.File
import org.lazydit.core.Backend
import org.lazydit.core.BundleFolder
import org.lazydit.core.BundleRunner
import org.lazydit.core.Manifest
import org.lazydit.core.RunResult
import org.lazydit.core.State
import org.lazydit.core.VerifyReport
import org.lazydit.core.Verifier

/** A bundle whose artifacts passed their digest check and are loaded into a backend, ready to run. */
class LoadedBundle private constructor(
    val folder: BundleFolder,
    val backend: Backend,
    /** Time to load the program and all its methods, minibench's model_load_time. */
    val loadMillis: Double,
) : AutoCloseable {
    val manifest: Manifest get() = folder.manifest()
    val runner = BundleRunner(folder.manifest(), backend)

    /** The guidance scale the golden run used; 1 (no guidance) for bundles without golden vectors. */
    val cfgScale: Float get() = manifest.golden()?.cfgScale()?.toFloat() ?: 1f

    /** The class the golden run used, a sensible first pick in the class list. */
    val defaultLabel: Int get() = manifest.golden()?.label()?.toInt() ?: 0

    fun generate(label: Int, seed: Long): RunResult =
        runner.run(State.initial(folder.noise(seed), label.toLong(), cfgScale))

    fun checkGolden(): VerifyReport = Verifier.verify(runner, folder.readGolden())

    /** The golden run's starting state when there is one, so benchmarks time the checked input. */
    fun benchmarkInput(): State =
        if (folder.hasGolden()) {
            folder.readGolden().initialState()
        } else {
            State.initial(folder.noise(0), defaultLabel.toLong(), cfgScale)
        }

    override fun close() = backend.close()

    companion object {
        fun open(dir: File, backend: Backend = ExecuTorchBackend()): LoadedBundle {
            val folder = BundleFolder.open(dir.toPath())
            folder.verifyArtifacts(backend.name())
            val start = System.nanoTime()
            backend.load(folder.dir(), folder.manifest())
            return LoadedBundle(folder, backend, (System.nanoTime() - start) / 1e6)
        }
    }
}
