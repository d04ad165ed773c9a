package org.lazydit.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import java.util.Locale

/** Per-step latency as bars; steps that skip modules are drawn in the lazy colour. */
class StepChartView @JvmOverloads constructor(
    context: Context,
    attrs: AttributeSet? = null,
) : View(context, attrs) {
    private var millis = DoubleArray(0)
    private var lazy = BooleanArray(0)
    private val density = resources.displayMetrics.density

    private val computedPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = context.getColor(R.color.step_computed)
    }
    private val lazyPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = context.getColor(R.color.step_lazy)
    }
    private val axisPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = context.getColor(R.color.chart_axis)
        strokeWidth = density
    }
    private val textPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = context.getColor(R.color.chart_axis)
        textSize = 11 * density
    }

    fun setSteps(stepMillis: DoubleArray, lazySteps: BooleanArray) {
        require(stepMillis.size == lazySteps.size) { "one lazy flag per step" }
        millis = stepMillis.copyOf()
        lazy = lazySteps.copyOf()
        contentDescription = context.getString(R.string.chart_description, millis.size, lazy.count { it })
        invalidate()
    }

    override fun onMeasure(widthMeasureSpec: Int, heightMeasureSpec: Int) {
        val height = resolveSize((180 * density).toInt(), heightMeasureSpec)
        setMeasuredDimension(getDefaultSize(suggestedMinimumWidth, widthMeasureSpec), height)
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        if (millis.isEmpty()) {
            return
        }
        val top = textPaint.textSize * 1.5f
        val bottom = height - textPaint.textSize * 1.5f
        val left = paddingLeft.toFloat()
        val right = (width - paddingRight).toFloat()
        val max = millis.maxOrNull()?.takeIf { it > 0 } ?: 1.0
        val slot = (right - left) / millis.size
        val gap = (slot * 0.15f).coerceAtMost(4 * density)
        for (i in millis.indices) {
            val barTop = bottom - ((bottom - top) * (millis[i] / max)).toFloat()
            val x0 = left + i * slot + gap / 2
            canvas.drawRect(x0, barTop, x0 + slot - gap, bottom, if (lazy[i]) lazyPaint else computedPaint)
        }
        canvas.drawLine(left, bottom, right, bottom, axisPaint)
        canvas.drawText(String.format(Locale.ROOT, "%.1f ms", max), left, textPaint.textSize, textPaint)
        canvas.drawText("step 0", left, height.toFloat() - textPaint.descent(), textPaint)
        val last = "step ${millis.size - 1}"
        canvas.drawText(last, right - textPaint.measureText(last), height.toFloat() - textPaint.descent(), textPaint)
    }
}
