package org.lazydit.demo

import java.io.IOException
import java.nio.file.Files
import java.nio.file.Path
import org.lazydit.core.ArtifactSet
import org.lazydit.core.Backend
import org.lazydit.core.BackendException
import org.lazydit.core.DType
import org.lazydit.core.Manifest
import org.lazydit.core.Tensor
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.DType as EtDType
import org.pytorch.executorch.Tensor as EtTensor

/**
 * Runs a bundle's model.pte with the ExecuTorch Android runtime. All methods live in one program,
 * so the weights are mapped once; each manifest method is loaded up front so that the first
 * timed image does not pay for it.
 */
class ExecuTorchBackend(private val numThreads: Int = 0) : Backend {
    private var module: Module? = null
    private lateinit var manifest: Manifest
    private lateinit var artifacts: ArtifactSet

    override fun name(): String = FORMAT

    override fun load(bundleDir: Path, manifest: Manifest) {
        this.manifest = manifest
        artifacts = manifest.artifacts(FORMAT)
        val program = artifacts.firstFileContaining(".pte")
            ?: throw IOException("the bundle's executorch artifacts list no .pte file; re-export the bundle")
        val path = bundleDir.resolve(program.path())
        if (!Files.isRegularFile(path)) {
            throw IOException("$path not found; push the whole bundle folder to the phone")
        }
        artifacts.firstFileContaining(".ptd")?.let {
            throw IOException(
                "this bundle keeps its ExecuTorch weights in ${it.path()} beside the program, which the Android " +
                    "Module.load API cannot load; export it with --weights-file never (weights under 2 GB)"
            )
        }
        val loaded = Module.load(path.toString(), Module.LOAD_MODE_MMAP, numThreads)
        val used = manifest.steps().map { it.method() }.toSortedSet() + manifest.decode()
        try {
            for (method in used) {
                loaded.loadMethod(artifacts.locate(method))
            }
        } catch (e: RuntimeException) {
            loaded.destroy()
            throw IOException("ExecuTorch could not load a method of $path: ${e.message}", e)
        }
        module = loaded
    }

    override fun run(method: String, inputs: List<Tensor>): List<Tensor> {
        val loaded = module ?: throw BackendException("ExecuTorch backend used before load()")
        val values = Array(inputs.size) { EValue.from(toExecuTorch(inputs[it])) }
        val outputs = try {
            loaded.execute(artifacts.locate(method), *values)
        } catch (e: RuntimeException) {
            throw BackendException("ExecuTorch failed to run method '$method': ${e.message}", e)
        }
        return outputs.map { fromExecuTorch(method, it.toTensor()) }
    }

    override fun close() {
        module?.destroy()
        module = null
    }

    companion object {
        const val FORMAT = "executorch"

        /** Zero-copy: ExecuTorch reads the core tensor's direct little-endian buffer in place. */
        fun toExecuTorch(t: Tensor): EtTensor {
            val shape = t.shape()
            val bytes = t.data()
            return when (t.dtype()) {
                DType.FLOAT32 -> EtTensor.fromBlob(bytes.asFloatBuffer(), shape)
                DType.INT64 -> EtTensor.fromBlob(bytes.asLongBuffer(), shape)
                DType.INT32 -> EtTensor.fromBlob(bytes.asIntBuffer(), shape)
                DType.UINT8 -> EtTensor.fromBlobUnsigned(bytes, shape)
                DType.FLOAT16 -> EtTensor.fromBlob(bytes.asShortBuffer(), shape) // half bits: ExecuTorch's HALF
            }
        }

        fun fromExecuTorch(method: String, t: EtTensor): Tensor {
            val shape = t.shape()
            return when (t.dtype()) {
                EtDType.FLOAT -> Tensor.ofFloats(t.dataAsFloatArray, *shape)
                EtDType.INT64 -> Tensor.ofLongs(t.dataAsLongArray, *shape)
                EtDType.INT32 -> Tensor.ofInts(t.dataAsIntArray, *shape)
                EtDType.UINT8 -> Tensor.ofUnsignedBytes(t.dataAsUnsignedByteArray, *shape)
                EtDType.HALF -> Tensor.ofHalfBits(t.dataAsShortArray, *shape)
                else -> throw BackendException(
                    "method '$method' returned a ${t.dtype()} tensor; bundles use float32, float16, int64, int32 and uint8 only"
                )
            }
        }
    }
}
