//! Decoding and validating a module: fills `ModuleInfo` and collects the function bodies with
//! their validators (bodies are validated in parallel, as they are compiled).

use crate::module::{self, *};
use crate::CompileError;
use wasmparser::{self as wp, FuncToValidate, FunctionBody, Parser, Payload, ValidPayload, Validator, ValidatorResources};

pub(crate) struct ParsedModule<'a> {
    pub info: ModuleInfo,
    pub bodies: Vec<(FuncToValidate<ValidatorResources>, FunctionBody<'a>)>,
}

fn invalid(e: wp::BinaryReaderError) -> CompileError {
    CompileError::Invalid(e.to_string())
}

fn unsupported(e: String) -> CompileError {
    CompileError::Unsupported(e)
}

pub(crate) fn parse(wasm: &[u8], features: crate::Features) -> Result<ParsedModule<'_>, CompileError> {
    let mut validator = Validator::new_with_features(features.wasmparser());
    let mut info = ModuleInfo::default();
    let mut bodies = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        if let ValidPayload::Func(func, body) = validator.payload(&payload).map_err(invalid)? {
            bodies.push((func, body));
        }
        match payload {
            Payload::TypeSection(reader) => {
                for rec in reader {
                    let rec = rec.map_err(invalid)?;
                    let start = info.types.len() as u32;
                    let explicit = rec.is_explicit_rec_group();
                    for sub in rec.into_types() {
                        let (def, func) = module::sub_type(&sub).map_err(unsupported)?;
                        info.types.push(func.unwrap_or_default());
                        info.type_defs.push(def);
                    }
                    let len = info.types.len() as u32 - start;
                    if explicit && len != 1 {
                        info.rec_groups.push((start, len));
                    } else if explicit && len == 1 {
                        // `(rec (type ...))` of one type is the same as the type alone.
                    }
                }
                // Only final function types that name earlier types: the WebAssembly 2.0
                // description (no GC type definitions).
                let plain = info.rec_groups.is_empty()
                    && info.type_defs.iter().enumerate().all(|(i, d)| {
                        d.composite == CompositeType::Func && d.is_final && d.supertype.is_none()
                            && info.types[i].params.iter().chain(&info.types[i].results).all(|t| t.concrete_index().is_none_or(|j| (j as usize) < i))
                    });
                if plain {
                    info.type_defs.clear();
                }
            }
            Payload::ImportSection(reader) => {
                let r = reader.range();
                strict_limits::import_section(&wasm[r.start as usize..r.end as usize], r.start as usize)?;
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    let kind = match import.ty {
                        wp::TypeRef::Func(ty) => {
                            info.funcs.push(ty);
                            info.num_imported_funcs += 1;
                            ImportKind::Func(ty)
                        }
                        wp::TypeRef::Table(t) => {
                            let t = module::table_type(&t).map_err(unsupported)?;
                            info.tables.push(t);
                            info.num_imported_tables += 1;
                            ImportKind::Table(t)
                        }
                        wp::TypeRef::Memory(m) => {
                            let m = module::memory_type(&m).map_err(unsupported)?;
                            info.memories.push(m);
                            info.num_imported_memories += 1;
                            ImportKind::Memory(m)
                        }
                        wp::TypeRef::Global(g) => {
                            let g = module::global_type(&g).map_err(unsupported)?;
                            info.globals.push(g);
                            info.num_imported_globals += 1;
                            ImportKind::Global(g)
                        }
                        wp::TypeRef::Tag(t) => {
                            info.tags.push(t.func_type_idx);
                            info.num_imported_tags += 1;
                            ImportKind::Tag(t.func_type_idx)
                        }
                        other => return Err(CompileError::Unsupported(format!("import of {other:?}"))),
                    };
                    info.imports.push(Import { module: import.module.into(), name: import.name.into(), kind });
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    info.funcs.push(ty.map_err(invalid)?);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(invalid)?;
                    info.tables.push(module::table_type(&table.ty).map_err(unsupported)?);
                    let init = match table.init {
                        wp::TableInit::RefNull => ConstExpr::RefNull(WasmType::from_ref(table.ty.element_type).map_err(unsupported)?),
                        wp::TableInit::Expr(e) => module::const_expr(&e).map_err(unsupported)?,
                    };
                    info.table_inits.push(init);
                }
            }
            Payload::MemorySection(reader) => {
                let r = reader.range();
                strict_limits::memory_section(&wasm[r.start as usize..r.end as usize], r.start as usize)?;
                for mem in reader {
                    info.memories.push(module::memory_type(&mem.map_err(invalid)?).map_err(unsupported)?);
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(invalid)?;
                    info.globals.push(module::global_type(&global.ty).map_err(unsupported)?);
                    info.global_inits.push(module::const_expr(&global.init_expr).map_err(unsupported)?);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    let kind = match export.kind {
                        wp::ExternalKind::Func => ExportKind::Func,
                        wp::ExternalKind::Table => ExportKind::Table,
                        wp::ExternalKind::Memory => ExportKind::Memory,
                        wp::ExternalKind::Global => ExportKind::Global,
                        wp::ExternalKind::Tag => ExportKind::Tag,
                        other => return Err(CompileError::Unsupported(format!("export of {other:?}"))),
                    };
                    info.exports.push(Export { name: export.name.into(), kind, index: export.index });
                }
            }
            Payload::TagSection(reader) => {
                for tag in reader {
                    info.tags.push(tag.map_err(invalid)?.func_type_idx);
                }
            }
            Payload::StartSection { func, .. } => info.start = Some(func),
            Payload::ElementSection(reader) => {
                for elem in reader {
                    let elem = elem.map_err(invalid)?;
                    let mode = match elem.kind {
                        wp::ElementKind::Passive => ElemMode::Passive,
                        wp::ElementKind::Declared => ElemMode::Declared,
                        wp::ElementKind::Active { table_index, offset_expr } => ElemMode::Active {
                            table: table_index.unwrap_or(0),
                            offset: module::const_expr(&offset_expr).map_err(unsupported)?,
                        },
                    };
                    let (ty, items) = match elem.items {
                        wp::ElementItems::Functions(funcs) => {
                            let mut items = Vec::new();
                            for f in funcs {
                                items.push(ConstExpr::RefFunc(f.map_err(invalid)?));
                            }
                            // `func` elements: `(ref func)` (WebAssembly 3.0).
                            (WasmType::reference(false, HeapType::Func), items)
                        }
                        wp::ElementItems::Expressions(ty, exprs) => {
                            let mut items = Vec::new();
                            for e in exprs {
                                items.push(module::const_expr(&e.map_err(invalid)?).map_err(unsupported)?);
                            }
                            (WasmType::from_ref(ty).map_err(unsupported)?, items)
                        }
                    };
                    info.elems.push(ElemSegment { mode, ty, items });
                }
            }
            Payload::DataSection(reader) => {
                for data in reader {
                    let data = data.map_err(invalid)?;
                    let mode = match data.kind {
                        wp::DataKind::Passive => DataMode::Passive,
                        wp::DataKind::Active { memory_index, offset_expr } => DataMode::Active {
                            memory: memory_index,
                            offset: module::const_expr(&offset_expr).map_err(unsupported)?,
                        },
                    };
                    let start = info.data_bytes.len();
                    info.data_bytes.extend_from_slice(data.data);
                    info.datas.push(DataSegment { mode, range: start..info.data_bytes.len() });
                }
            }
            Payload::CustomSection(reader) => {
                // A malformed name section is ignored, as engines do; it only feeds backtraces.
                if let wp::KnownCustom::Name(names) = reader.as_known() {
                    let _ = read_names(names, &mut info);
                }
            }
            _ => {}
        }
    }
    Ok(ParsedModule { info, bodies })
}

fn read_names(names: wp::NameSectionReader<'_>, info: &mut ModuleInfo) -> Result<(), wp::BinaryReaderError> {
    for name in names {
        match name? {
            wp::Name::Module { name, .. } => info.name = Some(name.to_string()),
            wp::Name::Function(map) => {
                for naming in map {
                    let naming = naming?;
                    info.func_names.insert(naming.index, naming.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// WebAssembly 2.0 encodes memory and table limits as u32 LEB128 (at most 5 bytes). wasmparser
/// reads them as u64 (for memory64/table64) and so accepts overlong 32-bit encodings; this pass
/// re-reads the limits of memory and table sections and imports with the 2.0 rule.
mod strict_limits {
    use crate::CompileError;

    struct Reader<'a> {
        bytes: &'a [u8],
        pos: usize,
        base: usize,
    }

    impl Reader<'_> {
        fn byte(&mut self) -> Option<u8> {
            let b = *self.bytes.get(self.pos)?;
            self.pos += 1;
            Some(b)
        }

        /// Read a LEB128 number, returning its length in bytes.
        fn leb(&mut self) -> Option<(u64, usize)> {
            let start = self.pos;
            let mut value = 0u64;
            for shift in (0..70).step_by(7) {
                let b = self.byte()?;
                if shift < 64 {
                    value |= ((b & 0x7f) as u64) << shift;
                }
                if b & 0x80 == 0 {
                    return Some((value, self.pos - start));
                }
            }
            None
        }

        fn u32(&mut self) -> Option<u32> {
            self.leb().map(|(v, _)| v as u32)
        }

        fn skip_name(&mut self) -> Option<()> {
            let len = self.u32()? as usize;
            self.pos = self.pos.checked_add(len)?;
            Some(())
        }

        fn limits(&mut self) -> Result<Option<()>, CompileError> {
            let Some(flags) = self.byte() else { return Ok(None) };
            if flags & 0x04 != 0 {
                return Ok(None); // 64-bit: not 2.0, rejected elsewhere
            }
            let count = if flags & 0x01 != 0 { 2 } else { 1 };
            for _ in 0..count {
                let at = self.base + self.pos;
                let Some((_, len)) = self.leb() else { return Ok(None) };
                if len > 5 {
                    return Err(CompileError::Invalid(format!(
                        "integer representation too long (at offset {at:#x})"
                    )));
                }
            }
            Ok(Some(()))
        }
    }

    pub fn memory_section(bytes: &[u8], base: usize) -> Result<(), CompileError> {
        let mut r = Reader { bytes, pos: 0, base };
        let Some(count) = r.u32() else { return Ok(()) };
        for _ in 0..count {
            if r.limits()?.is_none() {
                break;
            }
        }
        Ok(())
    }

    pub fn import_section(bytes: &[u8], base: usize) -> Result<(), CompileError> {
        let mut r = Reader { bytes, pos: 0, base };
        let Some(count) = r.u32() else { return Ok(()) };
        for _ in 0..count {
            if r.skip_name().and_then(|_| r.skip_name()).is_none() {
                break;
            }
            let ok = match r.byte() {
                Some(0x00) => r.u32().map(|_| ()),
                Some(0x01) => match r.byte() {
                    Some(0x70 | 0x6f) => r.limits()?,
                    _ => None,
                },
                Some(0x02) => r.limits()?,
                Some(0x03) => r.byte().and_then(|_| r.byte()).map(|_| ()),
                Some(0x04) => r.byte().and_then(|_| r.u32()).map(|_| ()),
                _ => None,
            };
            if ok.is_none() {
                break;
            }
        }
        Ok(())
    }
}
