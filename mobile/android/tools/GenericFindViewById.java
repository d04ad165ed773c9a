import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.jetbrains.org.objectweb.asm.ClassReader;
import org.jetbrains.org.objectweb.asm.ClassVisitor;
import org.jetbrains.org.objectweb.asm.ClassWriter;
import org.jetbrains.org.objectweb.asm.MethodVisitor;
import org.jetbrains.org.objectweb.asm.Opcodes;

/**
 * Gives findViewById the generic signature API 26 introduced ({@code <T extends View> T
 * findViewById(int)}) in class files of an older android.jar. The erasure is unchanged, so code
 * compiled against the patched classes links against any API >= 26 exactly as against the SDK's.
 * Uses the ASM copy inside the Kotlin compiler's jar.
 *
 * <p>Usage: java -cp kotlin-compiler.jar GenericFindViewById.java CLASS_FILE...
 */
public final class GenericFindViewById {
    private static final String DESCRIPTOR = "(I)Landroid/view/View;";
    private static final String SIGNATURE = "<T:Landroid/view/View;>(I)TT;";

    public static void main(String[] args) throws IOException {
        for (String arg : args) {
            Path file = Path.of(arg);
            ClassReader reader = new ClassReader(Files.readAllBytes(file));
            ClassWriter writer = new ClassWriter(0);
            int[] patched = {0};
            reader.accept(new ClassVisitor(Opcodes.ASM9, writer) {
                @Override
                public MethodVisitor visitMethod(
                        int access, String name, String descriptor, String signature, String[] exceptions) {
                    if (name.equals("findViewById") && descriptor.equals(DESCRIPTOR)) {
                        patched[0]++;
                        signature = SIGNATURE;
                    }
                    return super.visitMethod(access, name, descriptor, signature, exceptions);
                }
            }, 0);
            if (patched[0] == 0) {
                System.err.println(file + " declares no findViewById(int) returning View");
                System.exit(1);
            }
            Files.write(file, writer.toByteArray());
        }
    }
}
