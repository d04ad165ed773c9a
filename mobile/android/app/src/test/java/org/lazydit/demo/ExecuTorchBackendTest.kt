package org.lazydit.demo

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test
import org.lazydit.core.BackendException
import org.lazydit.core.DType
import org.lazydit.core.Tensor
import org.pytorch.executorch.EValue
import org.pytorch.executorch.DType as EtDType
import org.pytorch.executorch.Tensor as EtTensor

/**
 * The app's tensor conversions against ExecuTorch's own Java Tensor and EValue classes (plain Java,
 * so they run on a desktop JVM): each bundle dtype maps to ExecuTorch's, keeps shape and values,
 * survives an EValue round trip and converts back to the very same core tensor.
 */
class ExecuTorchBackendTest {
    private val shape = longArrayOf(1, 2, 3)

    private val samples: Map<DType, Tensor> = mapOf(
        DType.FLOAT32 to Tensor.ofFloats(floatArrayOf(0.5f, -1.25f, 3f, 1e-7f, -0f, 65504f), *shape),
        DType.INT64 to Tensor.ofLongs(longArrayOf(0, 1, -1, Long.MAX_VALUE, Long.MIN_VALUE, 7), *shape),
        DType.INT32 to Tensor.ofInts(intArrayOf(0, 1, -1, Int.MAX_VALUE, Int.MIN_VALUE, 7), *shape),
        DType.UINT8 to Tensor.ofUnsignedBytes(byteArrayOf(0, 1, 127, -128, -1, 42), *shape),
        // 1.0, -2.0, 65504 (max), smallest subnormal, +inf, NaN as IEEE binary16 bits.
        DType.FLOAT16 to Tensor.ofHalfBits(
            shortArrayOf(0x3c00, 0xc000.toShort(), 0x7bff, 0x0001, 0x7c00, 0x7e00), *shape,
        ),
    )

    private val executorchDtypes = mapOf(
        DType.FLOAT32 to EtDType.FLOAT,
        DType.INT64 to EtDType.INT64,
        DType.INT32 to EtDType.INT32,
        DType.UINT8 to EtDType.UINT8,
        DType.FLOAT16 to EtDType.HALF,
    )

    @Test
    fun everyBundleDtypeHasASample() {
        assertEquals(DType.values().toSet(), samples.keys)
    }

    @Test
    fun toExecuTorchKeepsDtypeShapeAndValues() {
        for ((dtype, t) in samples) {
            val et = ExecuTorchBackend.toExecuTorch(t)
            assertEquals("$dtype", executorchDtypes[dtype], et.dtype())
            assertArrayEquals("$dtype shape", shape, et.shape())
            when (dtype) {
                DType.FLOAT32 -> assertArrayEquals(t.toFloatArray(), et.dataAsFloatArray, 0f)
                DType.INT64 -> assertArrayEquals(t.toLongArray(), et.dataAsLongArray)
                DType.INT32 -> assertArrayEquals(t.toIntArray(), et.dataAsIntArray)
                DType.UINT8 -> assertArrayEquals(t.toByteArray(), et.dataAsUnsignedByteArray)
                DType.FLOAT16 -> assertArrayEquals(
                    t.toByteArray(), java.nio.ByteBuffer.allocate(12).order(java.nio.ByteOrder.LITTLE_ENDIAN)
                        .also { it.asShortBuffer().put(et.dataAsShortArray) }.array(),
                )
            }
        }
    }

    @Test
    fun roundTripThroughAnEValueGivesBackTheSameTensor() {
        for ((dtype, t) in samples) {
            val value = EValue.from(ExecuTorchBackend.toExecuTorch(t))
            assertTrue("$dtype is a tensor EValue", value.isTensor)
            val back = ExecuTorchBackend.fromExecuTorch("step_0", value.toTensor())
            assertTrue("$dtype: $back vs $t", back.sameAs(t))
        }
    }

    @Test
    fun aChangedValueIsNotTheSameTensor() {
        val t = samples.getValue(DType.FLOAT32)
        val changed = t.toFloatArray().also { it[3] = 2e-7f }
        val back = ExecuTorchBackend.fromExecuTorch("step_0", EtTensor.fromBlob(changed, shape))
        assertFalse(back.sameAs(t))
    }

    @Test
    fun aDtypeNoBundleUsesIsRefusedNamingTheMethod() {
        val doubles = EtTensor.fromBlob(doubleArrayOf(1.0, 2.0), longArrayOf(2))
        val error = assertThrows(BackendException::class.java) { ExecuTorchBackend.fromExecuTorch("decode", doubles) }
        assertTrue(error.message, error.message!!.startsWith("method 'decode' returned a DOUBLE tensor"))
    }

    @Test
    fun runningBeforeLoadIsRefused() {
        val error = assertThrows(BackendException::class.java) {
            ExecuTorchBackend().run("step_0", listOf(samples.getValue(DType.FLOAT32)))
        }
        assertEquals("ExecuTorch backend used before load()", error.message)
    }
}
