package org.lazydit.core;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;

/** A bundle folder with its validated manifest. */
public final class BundleFolder {
    private final Path dir;
    private final Manifest manifest;

    private BundleFolder(Path dir, Manifest manifest) {
        this.dir = dir;
        this.manifest = manifest;
    }

    public static BundleFolder open(Path dir) throws IOException {
        return new BundleFolder(dir, Manifest.load(dir));
    }

    public Path dir() {
        return dir;
    }

    public Manifest manifest() {
        return manifest;
    }

    /** The folder name, which is how people refer to a bundle in reports. */
    public String name() {
        Path name = dir.getFileName();
        return name == null ? dir.toString() : name.toString();
    }

    public boolean hasGolden() {
        return manifest.golden() != null;
    }

    /** Reads golden.lzt after checking its digest against the manifest. */
    public Golden readGolden() throws IOException {
        GoldenSpec spec = manifest.golden();
        if (spec == null) {
            throw new IOException(
                    "bundle " + name() + " ships no golden vectors; re-export it with golden vectors to check it");
        }
        if (spec.sha256() == null) {
            throw new IOException("the manifest gives golden.path but no sha256: golden vectors that cannot be "
                    + "checked are no reference; re-export the bundle");
        }
        BundleIntegrity.throwIfAny(dir, BundleIntegrity.check(dir, spec.path(), spec.sha256()));
        Map<String, Tensor> tensors = TensorFile.read(BundleIntegrity.inside(dir, spec.path()));
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            Tensor t = e.getValue();
            for (int i = 0; i < t.numel(); i++) {
                if (!Double.isFinite(t.getDouble(i))) {
                    throw new IOException(spec.path() + ": tensor '" + e.getKey() + "' holds a NaN or infinity at "
                            + i + "; re-export the bundle");
                }
            }
        }
        return new Golden(tensors);
    }

    /** Checks the digests of every file of one format before a backend loads it. */
    public void verifyArtifacts(String format) throws IOException {
        BundleIntegrity.verify(dir, manifest.artifacts(format));
    }

    /** Seeded standard-normal noise shaped like slot x. */
    public Tensor noise(long seed) {
        return Noise.gaussian(manifest.slot(State.X).shape(), seed);
    }
}
