package org.lazydit.demo

import android.content.Context
import android.os.Build
import java.io.File
import org.lazydit.core.Manifest

/** Where the app looks for bundles, and how it describes the phone in reports. */
object Bundles {
    /** /sdcard/Android/data/org.lazydit.demo/files: adb can push there and the app needs no permission. */
    fun root(context: Context): File =
        context.getExternalFilesDir(null) ?: context.filesDir

    /** Sub-folders of [root] that hold a manifest.json, by name. */
    fun list(context: Context): List<File> =
        root(context).listFiles { f -> File(f, Manifest.FILE_NAME).isFile }
            ?.sortedBy { it.name }
            .orEmpty()

    fun device(): String {
        val abi = Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown ABI"
        return "${Build.MANUFACTURER} ${Build.MODEL} (Android ${Build.VERSION.RELEASE}, $abi)"
    }
}
