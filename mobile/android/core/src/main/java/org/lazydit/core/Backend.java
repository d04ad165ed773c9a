package org.lazydit.core;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * Something that can run a bundle's methods: ExecuTorch, Core ML, or a test double. It receives
 * tensors in the method's input order and returns them in its output order, converted back to the
 * dtypes the manifest declares for the target slots.
 */
public interface Backend extends AutoCloseable {
    /** Short name used in reports ("executorch", "coreml"). */
    String name();

    /** Loads every method the manifest uses; timed as the model load time. */
    void load(Path bundleDir, Manifest manifest) throws IOException;

    List<Tensor> run(String method, List<Tensor> inputs);

    @Override
    void close();
}
