# Unfold the legacy folded `(try ... (do ...) (catch ...) (catch_all ...) (delegate L))` form
# (which the wast crate cannot parse) into flat instructions. Test-only helper.
import sys, re
def tokenize(s):
    toks=[]; i=0; n=len(s)
    while i<n:
        c=s[i]
        if s.startswith(';;',i):
            j=s.find('\n',i); j=n if j<0 else j; toks.append(s[i:j]); i=j
        elif s.startswith('(;',i):
            d=0; j=i
            while j<n:
                if s.startswith('(;',j): d+=1; j+=2
                elif s.startswith(';)',j): d-=1; j+=2
                    
                else: j+=1
                if d==0: break
            toks.append(s[i:j]); i=j
        elif c in '()': toks.append(c); i+=1
        elif c=='"':
            j=i+1
            while s[j]!='"':
                j+= 2 if s[j]=='\\' else 1
            toks.append(s[i:j+1]); i=j+1
        elif c.isspace():
            j=i
            while j<n and s[j].isspace(): j+=1
            toks.append(s[i:j]); i=j
        else:
            j=i
            while j<n and not s[j].isspace() and s[j] not in '()"' and not s.startswith(';;',j): j+=1
            toks.append(s[i:j]); i=j
    return toks
def parse(toks,i):
    # returns list node starting after '('
    node=[]
    while i<len(toks):
        t=toks[i]
        if t=='(':
            sub,i=parse(toks,i+1); node.append(sub)
        elif t==')':
            return node,i+1
        else:
            node.append(t); i+=1
    return node,i
def words(node):
    return [x for x in node if isinstance(x,str) and x.strip() and not x.startswith(';')]
def head(node):
    w=[x for x in node if not (isinstance(x,str) and (not x.strip() or x.startswith(';')))]
    return w[0] if w and isinstance(w[0],str) else None
def out(node):
    if isinstance(node,str): return node
    if head(node)=='try' and any(isinstance(x,list) and head(x)=='do' for x in node):
        parts=['try']; rest=[]
        items=[x for x in node]
        k=items.index('try')
        for x in items[k+1:]:
            if isinstance(x,list) and head(x) in ('do','catch','catch_all','delegate'):
                h=head(x); inner=list(x); inner.remove(h)
                if h=='do': parts.append(' '+''.join(out(y) for y in inner))
                elif h=='delegate': parts.append(' delegate'+''.join(out(y) for y in inner)); return ''.join(parts)
                else:
                    # catch $tag body...
                    body=''.join(out(y) for y in inner)
                    parts.append(' '+h+' '+body)
            else:
                parts.append(out(x) if isinstance(x,list) else x)
        parts.append(' end')
        return ''.join(parts)
    return '('+''.join(out(x) for x in node)+')'
s=open(sys.argv[1]).read()
toks=tokenize(s)
top,_=parse(toks,0)
sys.stdout.write(''.join(out(x) for x in top))
