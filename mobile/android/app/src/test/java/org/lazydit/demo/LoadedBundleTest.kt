package org.lazydit.demo

import java.io.File
import java.io.IOException
import java.nio.file.Files
import java.nio.file.Path
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Before
import org.junit.Test
import org.lazydit.core.Backend
import org.lazydit.core.Golden
import org.lazydit.core.Manifest
import org.lazydit.core.Tensor
import org.lazydit.core.TensorFile

/**
 * Opening a bundle exported by the Python CLI (-Dlazydit.bundle=DIR) the way the app does: digests
 * first, then the backend's load; the golden check through the app's own entry point, with a
 * backend that answers each step from golden.lzt (the real ExecuTorch runtime needs Android).
 */
class LoadedBundleTest {
    private lateinit var bundle: File

    @Before
    fun exportedBundle() {
        val path = System.getProperty("lazydit.bundle")
        assumeTrue("no exported bundle given (-Dlazydit.bundle=DIR)", !path.isNullOrEmpty())
        bundle = File(path!!)
    }

    /** Answers step i with its golden outputs (step/i/out/NAME) and the decode with decode/out/NAME. */
    private class GoldenAnswers(private val golden: Golden, private val drift: Float = 0f) : Backend {
        var loadedFrom: Path? = null
        private lateinit var manifest: Manifest
        private var position = 0

        override fun name() = ExecuTorchBackend.FORMAT

        override fun load(bundleDir: Path, manifest: Manifest) {
            loadedFrom = bundleDir
            this.manifest = manifest
        }

        override fun run(method: String, inputs: List<Tensor>): List<Tensor> {
            val spec = manifest.method(method)
            if (position == manifest.steps().size) {
                return spec.outputs().map { golden.get(Golden.decodeOutput(it.name())) }
            }
            val index = manifest.steps()[position++].index()
            return spec.outputs().map { out ->
                val t = golden.get(Golden.stepOutput(index, out.name()))
                if (drift == 0f || out.target() != "x") t
                else Tensor.ofFloats(t.toFloatArray().map { it + drift }.toFloatArray(), *t.shape())
            }
        }

        override fun close() {}
    }

    private fun golden(dir: File): Golden =
        Golden(TensorFile.read(dir.toPath().resolve(Manifest.load(dir.toPath()).golden().path())))

    @Test
    fun openVerifiesDigestsLoadsTheBackendAndPassesTheGoldenCheck() {
        val backend = GoldenAnswers(golden(bundle))
        LoadedBundle.open(bundle, backend).use { loaded ->
            assertEquals(bundle.toPath(), loaded.folder.dir())
            assertEquals(bundle.toPath(), backend.loadedFrom)
            assertTrue(loaded.loadMillis >= 0)
            val report = loaded.checkGolden()
            assertTrue(report.summary(), report.passed())
            assertEquals(loaded.manifest.steps().size, report.stepPsnrDb().size)
            println("replayed bundle $bundle through LoadedBundle: worst PSNR ${report.worstPsnrDb()} dB")
        }
    }

    @Test
    fun aBackendThatDriftsFailsTheGoldenCheck() {
        LoadedBundle.open(bundle, GoldenAnswers(golden(bundle), drift = 0.05f)).use { loaded ->
            assertFalse(loaded.checkGolden().passed())
        }
    }

    @Test
    fun aTamperedProgramIsRefusedBeforeTheBackendLoadsIt() {
        val copy = Files.createTempDirectory("lazydit-app-test").toFile()
        try {
            bundle.copyRecursively(copy.resolve(bundle.name))
            val tampered = copy.resolve(bundle.name)
            val program = Manifest.load(tampered.toPath()).artifacts(ExecuTorchBackend.FORMAT)
                .firstFileContaining(".pte")!!.path()
            val file = tampered.resolve(program)
            val bytes = file.readBytes()
            bytes[bytes.size / 2] = (bytes[bytes.size / 2].toInt() xor 1).toByte()
            file.writeBytes(bytes)
            val backend = GoldenAnswers(golden(tampered))
            val error = assertThrows(IOException::class.java) { LoadedBundle.open(tampered, backend) }
            assertTrue(error.message, error.message!!.contains(program))
            assertEquals(null, backend.loadedFrom)
        } finally {
            copy.deleteRecursively()
        }
    }
}
