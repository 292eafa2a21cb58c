// Weight names and strict loading, checked against the parameter names open_clip and transformers
// actually produce for the same tiny CLIP (Tests/Fixtures/safetensors/clip_names.json).
import Files
import Foundation
import Tensor
import Testing

@testable import CLIP

@Suite struct WeightLoadingTests {
    struct NameDump {
        let openAI: [String: [Int]]
        let huggingFace: [String: [Int]]
        let architecture: [String: Int]
    }

    static func names() throws -> NameDump {
        let json = try #require(try loadJSON("safetensors/clip_names.json") as? [String: Any])
        return NameDump(
            openAI: try #require(json["openai"] as? [String: [Int]]),
            huggingFace: try #require(json["huggingface"] as? [String: [Int]]),
            architecture: try #require(json["architecture"] as? [String: Int]))
    }

    /// Random tensors for every name (seeded by name order), written to `path`.
    @discardableResult
    static func writeModel(
        _ shapes: [String: [Int]], to path: String, extra: [(String, Tensor)] = [],
        integers: [(String, [Int])] = []
    ) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (index, name) in shapes.keys.sorted().enumerated() {
            tensors[name] = Tensor.randn(shapes[name]!, seed: UInt64(index + 1))
        }
        try SafeTensorsFile.write(
            tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } + extra,
            integers: integers, to: path)
        return tensors
    }

    static func expectedConfig(_ a: [String: Int]) -> CLIPConfig {
        CLIPConfig(
            visionWidth: a["vision_width"]!, visionLayers: a["vision_layers"]!, visionMLPWidth: a["vision_mlp"]!,
            patchSize: a["patch"]!, imageResolution: a["resolution"]!, embedDim: a["embed"]!,
            textWidth: a["text_width"]!, textLayers: a["text_layers"]!, textMLPWidth: a["text_mlp"]!,
            vocabularySize: a["vocab"]!, contextLength: a["context"]!)
    }

    @Test func openAINamesLoadAsIs() throws {
        let dump = try Self.names()
        let path = try makeScratchFolder() + "/openai.safetensors"
        let written = try Self.writeModel(dump.openAI, to: path)
        let (config, tensors) = try loadCLIPWeights(path: path)
        #expect(config == Self.expectedConfig(dump.architecture))
        #expect(config.visionHeads == 2 && config.textHeads == 1 && config.gridSize == 4 && config.imageTokens == 17)
        #expect(Set(tensors.keys) == Set(dump.openAI.keys))
        #expect(Set(config.expectedShapes.map(\.name)) == Set(dump.openAI.keys))
        for (name, tensor) in tensors {
            #expect(tensor.shape == dump.openAI[name], "\(name)")
            #expect(tensor.scalars == written[name]!.scalars, "\(name)")
        }
    }

    @Test func huggingFaceNamesMapOntoTheOpenAILayout() throws {
        let dump = try Self.names()
        let path = try makeScratchFolder() + "/hf.safetensors"
        // Older HF checkpoints also carry the position_ids buffers; they are ignored.
        let hf = try Self.writeModel(
            dump.huggingFace, to: path,
            integers: [
                ("text_model.embeddings.position_ids", Array(0..<77)),
                ("vision_model.embeddings.position_ids", Array(0..<17)),
            ])
        let (config, tensors) = try loadCLIPWeights(path: path)
        #expect(config == Self.expectedConfig(dump.architecture))
        #expect(Set(tensors.keys) == Set(dump.openAI.keys))
        for (name, tensor) in tensors { #expect(tensor.shape == dump.openAI[name], "\(name)") }

        // Where each value must land, written out pair by pair (independent of the rule list).
        func same(_ canonical: String, _ source: String) {
            #expect(tensors[canonical]?.scalars == hf[source]?.scalars, "\(canonical) ← \(source)")
        }
        same("visual.class_embedding", "vision_model.embeddings.class_embedding")
        same("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight")
        same("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight")
        same("visual.ln_pre.weight", "vision_model.pre_layrnorm.weight")
        same("visual.ln_post.bias", "vision_model.post_layernorm.bias")
        same("token_embedding.weight", "text_model.embeddings.token_embedding.weight")
        same("positional_embedding", "text_model.embeddings.position_embedding.weight")
        same("ln_final.weight", "text_model.final_layer_norm.weight")
        same("logit_scale", "logit_scale")
        for (canonical, source) in [
            ("visual.transformer.resblocks.2", "vision_model.encoder.layers.2"),
            ("transformer.resblocks.1", "text_model.encoder.layers.1"),
        ] {
            same("\(canonical).ln_1.weight", "\(source).layer_norm1.weight")
            same("\(canonical).ln_2.bias", "\(source).layer_norm2.bias")
            same("\(canonical).attn.out_proj.weight", "\(source).self_attn.out_proj.weight")
            same("\(canonical).attn.out_proj.bias", "\(source).self_attn.out_proj.bias")
            same("\(canonical).mlp.c_fc.weight", "\(source).mlp.fc1.weight")
            same("\(canonical).mlp.c_proj.bias", "\(source).mlp.fc2.bias")
            // PyTorch's MultiheadAttention packs in_proj as [q; k; v].
            let inProj = try #require(tensors["\(canonical).attn.in_proj_weight"])
            let inBias = try #require(tensors["\(canonical).attn.in_proj_bias"])
            let width = inProj.shape[1]
            for (part, letter) in ["q", "k", "v"].enumerated() {
                #expect(
                    inProj.slice((part * width)..<((part + 1) * width)).scalars
                        == hf["\(source).self_attn.\(letter)_proj.weight"]!.scalars, "\(canonical) \(letter)")
                #expect(
                    inBias.slice((part * width)..<((part + 1) * width)).scalars
                        == hf["\(source).self_attn.\(letter)_proj.bias"]!.scalars, "\(canonical) \(letter) bias")
            }
        }
        // HF stores the projections as Linear weights [D, d]; OpenAI multiplies x @ proj with proj [d, D].
        for (canonical, source) in [
            ("visual.proj", "visual_projection.weight"), ("text_projection", "text_projection.weight"),
        ] {
            let p = try #require(tensors[canonical]), w = try #require(hf[source])
            #expect(p.shape == [w.shape[1], w.shape[0]])
            for r in 0..<p.shape[0] {
                for c in 0..<p.shape[1] where p.data[r * p.shape[1] + c] != w.data[c * w.shape[1] + r] {
                    Issue.record("\(canonical)[\(r), \(c)] is not \(source)[\(c), \(r)]")
                }
            }
        }
    }

    @Test func inverseMappingNamesExactlyTheHuggingFaceKeys() throws {
        let dump = try Self.names()
        let config = Self.expectedConfig(dump.architecture)
        var produced: [String: [Int]] = [:]
        for (name, shape) in config.expectedShapes {
            let sources = WeightNaming.huggingFace.sources(of: name)
            #expect(!sources.isEmpty, "\(name) has no HF source")
            for (source, transform) in sources { produced[source] = sourceShape(ofCanonical: shape, transform) }
            #expect(WeightNaming.openAI.sources(of: name).map(\.name) == [name])
        }
        #expect(produced == dump.huggingFace)
        #expect(WeightNaming.detect(Array(dump.huggingFace.keys)) == .huggingFace)
        #expect(WeightNaming.detect(Array(dump.openAI.keys)) == .openAI)
    }

    @Test func benignBuffersAndScalarLogitScaleAreAccepted() throws {
        let dump = try Self.names()
        var shapes = dump.openAI
        shapes["logit_scale"] = [1]
        let path = try makeScratchFolder() + "/buffers.safetensors"
        try Self.writeModel(
            shapes, to: path,
            extra: [
                ("attn_mask", Tensor(zeros: [77, 77])),
                ("visual.transformer.attn_mask", Tensor(zeros: [2, 2])),
            ],
            integers: [
                ("input_resolution", [32]), ("context_length", [77]), ("vocab_size", [1515]),
                ("position_ids", [0, 1]),
            ])
        let (_, tensors) = try loadCLIPWeights(path: path)
        #expect(tensors["logit_scale"]?.shape == [])
        #expect(tensors["attn_mask"] == nil && tensors.count == dump.openAI.count)
    }

    @Test func strictLoadingListsEveryProblemInOneLine() throws {
        let dump = try Self.names()
        var shapes = dump.openAI
        shapes["visual.ln_post.bias"] = nil
        shapes["transformer.resblocks.1.attn.in_proj_bias"] = nil
        shapes["visual.proj"] = [32, 128] // transposed by mistake
        shapes["transformer.resblocks.0.mlp.c_fc.bias"] = [255]
        shapes["text.ctx"] = [16, 64]
        shapes["visual.transformer.resblocks.0.ls_1.gamma"] = [128]
        let path = try makeScratchFolder() + "/broken.safetensors"
        try Self.writeModel(shapes, to: path)
        let message = try #require(thrownMessage { _ = try loadCLIPWeights(path: path) })
        #expect(!message.contains("\n"))
        #expect(message.hasPrefix(path + ": weights (OpenAI/open_clip names) do not fit"))
        for fragment in [
            "2 missing: ", "visual.ln_post.bias [128]", "transformer.resblocks.1.attn.in_proj_bias [192]",
            "2 unexpected: ", "text.ctx [16, 64]", "visual.transformer.resblocks.0.ls_1.gamma [128]",
            "2 with wrong shape: ", "visual.proj: expected [128, 32], found [32, 128]",
            "transformer.resblocks.0.mlp.c_fc.bias: expected [256], found [255]",
        ] {
            #expect(message.contains(fragment), "missing \(fragment) in: \(message)")
        }
    }

    @Test func strictLoadingNamesHuggingFaceKeysInTheirOwnScheme() throws {
        let dump = try Self.names()
        var shapes = dump.huggingFace
        shapes["vision_model.encoder.layers.2.self_attn.k_proj.weight"] = nil
        shapes["text_projection.weight"] = [64, 32]
        let path = try makeScratchFolder() + "/brokenhf.safetensors"
        try Self.writeModel(shapes, to: path)
        let message = try #require(thrownMessage { _ = try loadCLIPWeights(path: path) })
        #expect(message.contains("(Hugging Face CLIPModel names)"))
        #expect(message.contains("1 missing: vision_model.encoder.layers.2.self_attn.k_proj.weight [128, 128]"))
        #expect(message.contains("1 with wrong shape: text_projection.weight: expected [32, 64], found [64, 32]"))
        #expect(!message.contains("unexpected"))
    }

    @Test func architectureThatCannotBeInferred() throws {
        let dump = try Self.names()
        let folder = try makeScratchFolder()
        var noConv = dump.openAI
        noConv["visual.conv1.weight"] = nil
        try Self.writeModel(noConv, to: folder + "/a.safetensors")
        #expect(
            thrownMessage { _ = try loadCLIPWeights(path: folder + "/a.safetensors") }
                == "\(folder)/a.safetensors: cannot infer the CLIP architecture: tensor \"visual.conv1.weight\" is "
                + "missing"
        )

        var oddWidth = dump.openAI
        oddWidth["visual.conv1.weight"] = [96, 3, 8, 8]
        try Self.writeModel(oddWidth, to: folder + "/b.safetensors")
        #expect(
            thrownMessage { _ = try loadCLIPWeights(path: folder + "/b.safetensors") }?
                .contains("vision width 96 is not a positive multiple of the 64-wide attention heads") == true)

        var notSquare = dump.openAI
        notSquare["visual.positional_embedding"] = [16, 128]
        try Self.writeModel(notSquare, to: folder + "/c.safetensors")
        #expect(
            thrownMessage { _ = try loadCLIPWeights(path: folder + "/c.safetensors") }?
                .contains("has 16 rows; expected a square number of patches plus one") == true)
    }

    @Test func weightsPathMayBeAFileOrAFolder() throws {
        let dump = try Self.names()
        let root = try makeScratchFolder()
        for (folderName, fileNames, expected) in [
            ("hf", ["model.safetensors", "other.safetensors"], "model.safetensors"),
            ("oc", ["open_clip_model.safetensors", "zzz.safetensors"], "open_clip_model.safetensors"),
            ("single", ["ViT-B-32.safetensors"], "ViT-B-32.safetensors"),
        ] {
            let folder = root + "/" + folderName
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for name in fileNames { try Data().write(to: URL(fileURLWithPath: folder + "/" + name)) }
            #expect(try resolveWeightsFile(folder) == folder + "/" + expected)
        }
        let two = root + "/two"
        try FileManager.default.createDirectory(atPath: two, withIntermediateDirectories: true)
        for name in ["a.safetensors", "b.safetensors"] { try Data().write(to: URL(fileURLWithPath: two + "/" + name)) }
        #expect(
            thrownMessage { _ = try resolveWeightsFile(two) }
                == "\(two): several safetensors files (a.safetensors, b.safetensors); pass the one to use")
        let none = root + "/none"
        try FileManager.default.createDirectory(atPath: none, withIntermediateDirectories: true)
        #expect(thrownMessage { _ = try resolveWeightsFile(none) }?.contains("no model.safetensors") == true)
        #expect(
            thrownMessage { _ = try resolveWeightsFile(root + "/absent") }?.contains("no such file or folder") == true)

        // And a folder loads like the file inside it.
        let modelFolder = root + "/model"
        try FileManager.default.createDirectory(atPath: modelFolder, withIntermediateDirectories: true)
        try Self.writeModel(dump.openAI, to: modelFolder + "/model.safetensors")
        #expect(try loadCLIPWeights(path: modelFolder).config == Self.expectedConfig(dump.architecture))
    }

    @Test func configForReleasedModelShapes() throws {
        // ViT-B/32: the shapes DESIGN §1's defaults describe.
        let b32 = CLIPConfig(
            visionWidth: 768, visionLayers: 12, visionMLPWidth: 3072, patchSize: 32, imageResolution: 224,
            embedDim: 512, textWidth: 512, textLayers: 12, textMLPWidth: 2048, vocabularySize: 49408,
            contextLength: 77)
        var shapes: [String: [Int]] = [:]
        for (name, shape) in b32.expectedShapes { shapes[name] = shape }
        #expect(shapes.count == 302)
        #expect(shapes["visual.positional_embedding"] == [50, 768])
        #expect(try CLIPConfig.infer(from: shapes, file: "b32") == b32)
        #expect(b32.visionHeads == 12 && b32.textHeads == 8 && b32.gridSize == 7)
    }
}
