"""llama.cpp's Unicode tables (``src/unicode-data.cpp``, Unicode 15), embedded so that every Python gives
llama.cpp's answers rather than those of its own ``unicodedata`` version.

Each table is a run of varints, zlib-compressed and base85-encoded; ``tests/test_tokenizer.py``
regenerates all three from llama.cpp's source and compares.

* categories: runs of code points with one class (start delta * 8 + class), classes as below;
* lowercase: ``unicode_map_lowercase`` (code point delta, zigzag(lower - code point));
* NFD: ``unicode_ranges_nfd``, llama.cpp's one-code-point "decomposition" that keeps only the base
  character (start delta, last - start, zigzag(nfd - start)).
"""

from __future__ import annotations

import base64
import bisect
import zlib

# classes (llama.cpp's unicode_cpt_flags categories; one per code point)
OTHER, NUMBER, LETTER, PUNCTUATION, MARK, SYMBOL, CONTROL, SEPARATOR = range(8)

_CATEGORIES = (
    "c-n1N4`>_L8RvU<lHYyz&N)4u(#uI&&nGD;vb`yaJuXT-6#oIoP2eKiB~9Amx-;{#1)Qt}uWi7Qoz`u`YK#jeO+if)NJBCdlY*8d"
    "VESh>Sp#0Pf@xAnhXd-`4Yf;$X;Zo<Cmk!4PkQ(6?tAa|ec$_j-*^7!h#FN})rQ_sm|ugas^K-zRIUCcqH2vA7c;FPglb4ZRSDx|"
    "z;6IQh&V$Bo3k2fN1;&Hj5?1YO>h-Wq*w%e)rTKZmMtNc2v;+IA$rJUpAx3Bpb*-=1WrtUv^5-3L&n~E)w)66fL_PISNzC+rm>6>"
    "Voo3*<?2X1GQ15-z~A%jp$GCuNl!?%sG;!-;IJNMv1D)*-vcv9ad+xnz;wOd(*8H{Ctxp-3zEgAfo1!GfnJ;d6LVbWB|sOcWgEy`"
    "LpLniNgW*{dLSPPv~rbE!^E_6PfxFjL0K}c8)k%NZKRv~ctoXrCUy&F?<pn4W;tdulhdaRJ<zMsEK9Th!@H|e!!x&<cj5X`N%x6p"
    "r7aU}OBXZU(k;^(h$kZ^vpH>{2lnThQaJ%r1{{Oh1_Hz0s-wW+0>|5;v>^-QJr(aR$X%U`jx`N5=+B*+rSB2G`pVI$6H&6lfLBGZ"
    "gpE^R&4X};ayLTbX+~LYqh|!^;Dm&Ro4~CdO0Rx~)C^3b(4^RhMi1plq|8-3ZWo9aKBQ`q(8g21G$Cr7=deiPuLI*vyIGNFomyH8"
    "Hpj#^H^>Q4dNVCf++voIjX1v^WJ+Ixmk81n<<|*T479m8Au%oxF-(&G-H+meBrdbE5#C+|>j-$6l8>i@cx%0iFM-Hg-MTKXvvS!P"
    "uzQX}SnrtueQ+2}rVpN!#)+jyk<oy+(cAR!kC@_R7JS(zK2yUk$@vvv1Mz_b4F~d7;K@BViL(eBcSonmB}fMOS;=D+FqGQrteQ4f"
    ";HZ?kLtcQ~y56?Foe${Dx()jR`DHTF;hZEz2ygJLb@|r`@6Ij}9?o@!*%^pq3yP#mO|XJo3h=b>TnstkUrknkpO&x<HIWo;md(?e"
    "wcq4ouCIBt@z1dKC+aCs_p86CPuA~38fXo3r9Z6WaCDM9Gf56{&Cz(jSlyfv)D)7yM|dLD>}bj{DbTDZ-o7vKDTHpWxeB}AfLqe%"
    "@|*DX`U79Wi&E%o=znG1oA9-i7$>39eW5X;UGbl*&%`agu|fUrfaayFN}mwf*5l&$gpHH0h<bzs2VN$Npe^`@O4<kT9EgYq)c)X*"
    "vSSlA2dto`W65WPco?tw&`vE8topP-B7cMw$s>3KRzT_h9J-W4he`h*$f1I9<hWFjD;12ErJjEi{;6&qhP-|P?vNPk#XG>y%YDIg"
    "*G1ULFZ=nJoLbG)w_pM=f^obA&2hS})y}*w*`0hwnu3mi*D?*8EENqUzYHDx5)ALf3PhYc<Tt~pcro6DyYfjvnUS6db_x~+oy#Ed"
    "bw)yww7iKkq;El(KitS8dOj`AFTEO$j|e`gJICufm{^l3Ui1x?!I_lS7pCOuTE6I?Bko`_#jqcT1()b*b-CrAgaTY&8!Et<%u7-m"
    "Es&x3ICw4NFiX@YRn1g2Rd<qDrfcaBR%$i7;Ime(;AYg-+y|pNAHYSxSr7oDd}Nv|)is(86%yTkReBymrZya<-;mD;ou(DACZ%T-"
    "QIHQ4yXQ5)Z8UX(BvVyT1&5suCHX$7Dm8bABYyLwy(sO)-8i~h)$U!7$>m^A3G%tOAdQOzyU)mJPVpuYHI4Ezs7m`~2xM1aTX#XK"
    "S+yZ`9@1f9V<Rod^HKv3j6vWFBI=Xg<k+HI38I;CrF%<v_7e!=Ctwyx7cPU|(CGG*q;R$bf%aM0&^`rQ?8n@KZ$Z8&%}V=brOla>"
    "#NOte=PMvAVL{6E8?yBY<Z1f_cqo>fgBgg~bE4n4C!h>Fth3V7Zo_RrgVP<(XJqeMHBKL-d;vClE!IggqVzh9)Ar*;6$;jbbTAf="
    "u|Qr$)l`bGX9`63d0cRsej%+^DG`xgnz=&;Hh3-e_c{RMcRN6>w5OVM!;K_Aq-UjRh;8WARfgslFd>}~?$T}E9Nr<W@xVoh>(gXH"
    "dJ!!8khf|07~CNHRJzfdla|03ZFoG2?iF>JJWWsd56iPKm=m2LC&1o;G}8@-Aq$$@y*W9@FNyuKswjUS0?WTcvMkm~+u5GmWE?Ct"
    "xo<(<;?1q;#<L{H+STN)ipcLO7$smMSLB-c7f3onna;9In3qY5Cle$o?o)KLHy1n(F@3Ax#W2ngH`4e^Z_Y=5dk!k_D_q=s-oN5k"
    "lY5Hn?<e6!zrOF;4nfYA(f7ZCa{S6G@<L2xMvZnWvM9*{w2|f~q%F-(OryIz#l_Q*nuS8+Vfl|>pYborab#s_t211XgTkMO^@H=@"
    "lJ?Th_euA~-^=!DuxI&G^dBHXeb8>dX`YyZC4Xwz>dty07Oc0IPmwAy%CNIocS|a*=`WMeveX>;X=j(wb{i5E=^V_+QTo@qB0N@v"
    "p|WrL0$il0eOQ*or;bP|ZsUMBY!@eG(U5XtaudYS3sPGy7DN0h;MLU+r5_w~ftRHT`?3^&S?biD(1OWll5DilwE~&+S<PjWV7MZ%"
    "f`iggLJM^j63My&Pjv2raU19huuK}fW?G0YLxVT>V^;tRn&W8}*x_CwC*>?{@M8M&8$XhisA7LC|C1=A)6B-DS~;MCm!4Q5x=n^U"
    "ce{>x@A-F9yQ_uKUe)t(5>lq{Z4ypN`j`4mk|_FzMnj|8sCJs{+CPc!N)^~I9(T9tPo_Um=GzjJ5FL(|>k=!zR?$!o4J78JF0XZ-"
    "bX6gwe<>G3LnEQ#Xm?wcXl~btSlHb*t7v8E4dTt^#{Oj#$l^H3R5d<TAqOX~Nl#VRPalJ7!}Oy|7f5RCS@OGguM_$o81qliu{F<r"
    "e1G-Z``3#9e*wwYU?u"
)
_LOWERCASE = (
    "c-rk&%}X0W6zBKeZsKa92E@{XBGR)^=%LVyg`PyD|3N+VDmmER#8kwOVlRz7v?^9b*AE0gP>K}d!3v665WIR7q>6$Ek)UsO<40nQ"
    "PByh3I=|oB_ukCQdo!D5W?oi98*jCuDaorO&DO=P=9GTcOLG7?+8AQT=uzq`LrB~QL>XTaU42Z$i~;cs(PK;#?oWtjl`+elu%;Q)"
    "?$DeHraVKObGdc8>_#mD4Y=znTGI68ZP{vVON8Gxq)aQL6ZnM7qyx^v$=ZRxmTDlNW>6EFNb}EAcv5WLFgf3QsUDQq*+OvH4?R|U"
    "!_!;eUp{5k%HieH({5akoMELj7RLROVqsq_ylM7t8~88TOYtSXg-)yRPs!)TB0b2KAAk4POB5jq))l)T!&s^xC?W@`F^@HJT=<`%"
    "7z&I77Yqf|$TEaMWo<(-7&rxlCk{hn^rO*;e*iv4;D26Kfs81j8Q(K#W2!KRTUk2Dmj7o2Sbc%D5hV8Ic{vY{rSqrg1siI=w&G&P"
    "ZQvfhM0Grxw0@{pt0co%dvYqn)AS0|qs_i@MKOssq9)&zxvkqouSmB@L_~ZVjGEXK85M~YUR&uKv`XN<Tf|R3d6v<{WHx8|FY7gO"
    "ijG_*>P1~TP#rRWu6et`X5c|`?~%v*SY+JmjqdvqUU|nE%w6_G"
)
_NFD = (
    "c-p0zZ*ZGccE<1fO1AQ+K*^tl?zY`+x6_$2(@r~E+Ap2inYJ_C_FFss*qQyb-%2nu-L<!~+l^5iMJPrwiZR9r;}~O%5ylb1sKzm>"
    "F~T^;F-90gF~%syaTKEnp$Oq9>hpUoXVW(9e&~$P^PKzMt9#FT?z#6p_u3fqhSgBDJjQ2Rt~T2(X)tZJ<!-Y*E}!kzbJwq_w@tvd"
    "OjR-|X?0m<O57$+-ok$Ithik~FYXX8ibLX*?K0isjLKp0invdl6%UBl#Y5uUEgTW&#iQb)I3_NO$HW!&HzBU6oDh2@(-NO#MiP+B"
    "x!h(^+{yToE|+c6;vUJeq*t;k>321l4e_vKQ!*kcNTT|EMLaI4N+u<(ZoRw9WxVeCc<%amZpPEQi|551VrOjelDJ!(VQhDOY&T=O"
    "%z$`Z<sorS91-WmqvE1CCN7KP;;q~8gnL_R(i39GE;n}lzUga_f8BSQsJP_*9n;llnY8qPcuwpUPm8xC6Ox)Fam#a`c;;q%+r%5|"
    "Z5y}Sj%l2V-eIS_Qy&wTZz(@unYV1ZahtRr^)$N7qPSC1kVGXp_x7vLy0=|e)w4-St4Ho`{PpFEWc-%rTa9%yC5hX#_lsx60r8yd"
    "85VCgdd!Sx``NU_Cy7bQY8Us^`}EZN6niD3l44`KZGK^yU)bh{mTCS|Q?mD%wmUo~zSlC}&{T`QX_?=)%<tOf4{h@&micqb{L?qh"
    "?^#Awdo1&tmf2^S1D3gO=izTz<}S<ZZm_IBw(fJ8@3@WCKo9EfzP-l!j<N2s?su8*JJ0{dGJkKG`|mZ10oOlhsVUU$JGYmHU0)hn"
    "F5Ao2<+Q3VkeiFuRbQkm5(SAkC|<bPdS~ggl$ON*dns?1cb52&ZSAqm4=kgZ{K1nl**4bQ#`-|k?lP9kSbt#JEbFHH+%i9Q{(fYc"
    "AO5T5x!WnqoBvE>_jiBU&}Dvf+0w(EHh*bce_=EQ`rG?6<7zRM$D;PIwe$2*HMi}Cby=_nU)BHaF#ov6Xgg4o7Tf$}xB2$I|I^?B"
    "V|{#3zrN*9FYrf>vh5cs6Ah;N6Zu9`lO!bGX8Bv}6VHhK;#qM(JSPr{7sMfPO57z*i+jY&;;?u{+$YY82gK{*A#qL|5$DAt;(~Zo"
    "TogyeCGnWJA|4kzwuxIMQ<64pYp&bYylvAC&o$R=Yu>hPQPL?{l5|Tl&2`(Fw{2UM^h?$xgOUx&Fg7;VZEUXFCW%SPk~p?C*KKRA"
    "+tyOIO`OEGmby(X+cxcRu%&LBI3?~9r?IW2Zd*&;HgQ%wAYK;_wQSooEZ!84hzsJVxFjBH*|sSz-V#rUYvP31E17Po+tjjc%dDhb"
    "GB4@Crk1)*Ep?kDJ(6WfuVhuyk4-Ign_9MQ+GyFfDJO|Y@{&<WQ4-^w>SJTaq@r}}-x|!sPh}g=#9qm?#3z}N1SE5kpkzT3lB6VE"
    "lC-2pvMlM9tV;SNYm!09hGh6Q<xR<mq#%h(N|G^2MKUg_N+u<(|E@W_P5JBEwTY8rzj#*ME}j>6h!@43;w5pnI3o^=SHykdtaw1Y"
    "{wtmjiF4wJI4>R*7sWAg`8MUacuPDXuKm>G2|uvQv-!ZThM1)7&@Rt{%6*5NXP${eyBb<03o3UW+HKYk*(N8+ONxgqPejkFhjv-j"
    "L$+19MGBG)$=V^eC;XuLl8j1Pn|663;_8FD+|>sgEq{~ko@;6}{w9|h{h4KVHo2{ElYZA^+iOiO`&%woq^Z%0H`%UgQ-l52E>}z~"
    "rqv>$M{N(eP3J?F<^Q>D!vEp27gU#4-RMKM-S?2obZ8URw(K6TP36aKGvU>~y6CkYH2W=c_kQ!eZySBye#0`2_dENbHtTzx9q(Ia"
    "x69f0q~BwvkMV4;`M%tKOg*du_vmkXW86j$U$VWoKKU-A>~{V<e`b>U4bta`$2@55{QZ?V^F2#)`YvN%-Sa>9;M@MWb`)p-|K;Dk"
    "riX3)&i`i@F22U~KYarpzGlt3YdQB>_pH0K<k0X9hZ4R9Xz7GQo81n1`yJ|j(V>x;L(^v*$|M~soO8%`-l1^Tq39KdW=amN+;FJm"
    "YlH$FjnDs`$)6^*e4Cu{d1<AW1#8c%I512ucT)L7YE9XD{)V0vo+4j;l*Fz^x^;on^$|hnQ&sfMl6{iWM&F>_DH7w?$wEg+^PZuD"
    "lY$so?ef!P2iM8XUr>K@j|)a$Q*GN*f-GHmuaM#ARor}5Fidh>J0loNtJp&h9DI}HdPBv2UZM69x$zT%aZUzv&#BYRu%NG7u(Uu0"
    "Y3~$cbom8q7qR6mHZx?914H1LAjC1Dh6T$HWBm;>=FbEhoC8WvkjQhwNX5yGTGf5^lG-K7xZATFXUNklB>Mqe+|SV_OS^?4j=(Q#"
    "<f~PjJ$aRc{R)F0=PfZeNH2M;?|52JyiOA=n8Si3*;kZvOxJmJ5OuP6Y?*mcjq@cuv_?f2?hNw2bh>~+v-qX*DYX%j@Y9?m<^@5{"
    "Eb~l7&k-Dkhi2Z_Gd~BI+^Z_K4ss-mO50!-!sj`8EJ^D-A?P4z!p{g+u(>d$XM>*;VHZda|8r;JLr-#OILSbV1;dv)i@b}ko+Cgo"
    "a+LHjPJpc9=h9`SqDPJWWcWjbN{Wb$Ucregg5Hk^l|@2;vrwo{&`H2`a<rMkb@NPjmeXPCJ&tOe8~eyO{f>+2J`oZ``U#aOn(*eM"
    "94<0AY~e%3;Mg)>qAOy}$4jp~B4{h)Ng}qF#wC33=lnKw39qej>LlMSKY|5B#Mn_Po@crb6a3FG`%LXfmSY`rndrw&^t{Ea&YUBz"
    "&M>Q-0IQsJ0<5TZUS{)>+*CQMXCsfQxb>8N+daeTNisdm^zw@gglX#>F{j(;g*nPPr*MvZNjw=NuU{Zk%Aa!tWf7-eU@lp2L!ZzK"
    "oepv^9j5U*P7HV9Ni6Lqqz2w$19%hb37T=nZ6j3DoR>#fzwJPrHxCm0OT<PNBYWv;oP8sL6LXx3dl)EoO>a54DTwoKi!T%HAM;xl"
    "$q1*~Ii{z`I-lZzoFw!rxHHHZ+TTlb0<le8!bX<<f>TO`Q#h9P&#`7W(3jr=aA%c!f;<7&#iVq1G`LLesLr+H@48)Plek}E*>^K3"
    "V;rPQY#tjx7Z6}-ConCsq0eB?Il<!V`n084RtwL%+@^GdMFRMMLP2lY%hcw1b1$1^Xh1N71&eGCy+D%K9eqr&dV*&`UeG7#KT13k"
    "K28iR5SYUR*D5pEvq~VbW+vGkv#i1DTU6kKB^*1$R79Nx!Bor>^2MVxIYRIQ0ieqJ7J+rZe-j3Y>_OJx@K<b>Y%*bBgk5i*JBwk0"
    "VR=>G%H)b%68w<+4Zb9utic4=G;)*H>Z^nbw>T?A;xZe6pP5-?F)g!k=hijakyAPo4{<vZ8YO^F;k9Q4Ypm5}v<>{XOvG03UyNm+"
    "Jh`(0IG&t3#?NqKk?k-AjI&>jRyD@TXM`RQBO*p_?h%EHe2Un7OZa(_;wa7@!Py-d{LJ22VJ|7ZFNm|IO9WgV*kb*T@r4*0XSTS("
    "sqks*VGZW_YE;<aGJF<u+#4;h*R8N0<icpo(b(h677M5SG3E#ub3O#X`lEa>h|@)2f?KE(bChQFtbHjMBu>lh3~StJr7trTe0BXS"
    "p)w!M4d!T-^*aR=x!>{vD?o{lbrtBN7(mN0jRmGL^b!@$Ui>T(!52Hkg<q1LKTEV{ST3DFjUBTODBaM4$ns&n7E=;<2{?99uyLJB"
    "s>{qJaA{c~@P$wL<Cj4tqeGu@_poXIt?{Kiwn@M5+3RXedEEAR%HuMVDIMd#2JBy1Vc({m{q_CjfD(`e7E_+H_c<x!U1qP>B5`ii"
    "p5?h}TZ-M?*PWXaSGCbJJa^SLcUTQ~{7d~hrG7b~zc<dhP21o>MHbKsBr>W?o{|>n6LbRpX9PV@3s%B{>8Au`Ak+R0ZPQ8pqP0iG"
    "(vt_-g9T9_H>-*$P0|#DKqt>?-O|>9?g4s1n*}Q5M)OZdivhLc`t3{?MPTJ|x(C8kjCV?l18qR&<Uv;94h#a*A;B0h2$UZatO@Mw"
    "V+UO(_?n09{D3;`P{jx^6xFjHv<_h7gkbzpe1Mh<;+Npgv(9!w_Bf^maGk(v4IH#h<`GN-hJhfkaYPXC(+gU~$7=x{y!muhX80bK"
    "Hqk0*2SQ$6<}l6ymTsuYM!W2rr*RS(2HJq~bwOoIkUz?GVjB@tQ85Tqz7%wSC8(7Jg*N$b2}qO<Sk}@P2W*r4N)fd9Ih_JQpi&Tw"
    "mQ=BZmIe|R1p{asUUd+;DlG&QKBGxq5V_3d>XjX>7i|#m0h5<^V6askw4=p01RcQmr31XLDgqa{u0@NjV+Ifbd_aY}{r*p7{bZ`q"
    "HvQ-KTUK^W?-8!yL~fh6$Zj_=cNxgvP=yz*H+z6gn}I$NOnfYut1>+_2~+G%a;Lk3LCb;|5C!7E$^|r_n89$gDq0_~bzV>crhpM3"
    "lE&~4dA7u8DWdLGuBy?tKES7Fh4*>YMP`ee>G*qeMRA0R!LL|b3(^9>{5e4wEml!QVGgT++9~~ZewJS(8TTD#>zbNuz0K5?rKN!y"
    "i+Brg+7+l>_*kdptwr_&o^8EF1yGshRnej+)%_6t%}g;k72*G4@Pr`Oq1s`z0JZ&-1W1V}KEtyK>>DR+<MiiO<Nnu(x+0s*7|&XH"
    "^H+)S&oKjSD25|m*@4AM1F^>4I(Pj`r<s7Oe2`yedVmPe7DfbKAoP-;6)lR^1=J!qF|VHuP%%2p%e=sE^El^uY5pPB)+IF=dXeCN"
    "PLTbSd>!Z-puc`z8Ylv_P4+dk*eRwPNcYiXUQ05<c2hjh|2dwPww~g|)k81<{Xpz2>BN%+A+VanzBdJ##|cMZYlC2wX02~%yO|3S"
    "K0x&`x&r1q2%1Z3*L#8r{tc54N}D-NCW{vRh!uYvja1zS6i98nYX@042RZ1fwuijF7g!`s?E~hHX>fsUwtQGh<LXfyhL-z;J&}y4"
    "=4Gb6&gLe_tg?|EXQFBfvmz&-UZ9=gQguJ^rzWG<rS$?`z+}yBS-G#=wpp$0XGt=~HIkBRDn^0I1;VlD92!+@&oF}pX#t9hXfvdD"
    "9akABt=hTIq@_0nsVj8wAzSV;sVgacjN%wONO@hg1rn}lwCb8*14z6_c1G?Szo_CcXO=Kp;t4r+=>vS9Rk5~82Pw97v_3ZJNsd1Q"
    "K#r{{1B5<OZ4g)<6imO*;><|%Ul6RLP4JnWLQ4Q6z>2m$6XR}T4XvCOY<?)nEHN&{Nwm!m=sqRr=2?Vi!$3QbAyX`pwD*y|mlp_u"
    "_f(Ms27v?zu;7BU))#0;lOCWtNE%3*-%fFQ4%2`hpxe>TVkwY%huT?zcZQxR_M_$B7R=AHdnfVQTY?UX)6)zNjFWFJPZ1@+z`JbM"
    "XyKFkOvE`#%yIz`K8v$~<=64#IBywel4DrFX>H*Z1_w%~@z5xplBN!k&V*ma*}&2Wb3UbKp%<miy}-+y<HYJ5DF;-{_G1gM`3^}Z"
    "+Va!P^iw;K3Dd3%w*zZjzD#!zy9qY#6RZXP(cJY03+Fh_;S1XzkhaQYSe$<sht81f0MTPq@ZYk~1fkri<IkFJzilEuRdkXHPaa_j"
    "jgw_~ab2sx2Xq`}wAWZ=Tl$9PxAy55WkL80LG=|f8DReNeQX6>vr+86$UoUX=0ENq38I^-t(_(ny0VX}lzn{T=?d@ziQGQUC-#2>"
    "MoQ0{"
)
WHITESPACE = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F,
     0x3000]
)  # fmt: skip


def _varints(blob: str) -> list[int]:
    out: list[int] = []
    v = shift = 0
    for b in zlib.decompress(base64.b85decode(blob)):
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            out.append(v)
            v = shift = 0
    return out


def _unzigzag(z: int) -> int:
    return -((z + 1) >> 1) if z & 1 else z >> 1


_runs: tuple[list[int], list[int]] | None = None
_lower: dict[int, int] | None = None
_nfd: tuple[list[int], list[int], list[int]] | None = None


def category(cp: int) -> int:
    """The class of code point ``cp`` (``OTHER`` ... ``SEPARATOR``) as llama.cpp's flags have it."""
    global _runs
    if _runs is None:
        starts, classes, at = [], [], 0
        for v in _varints(_CATEGORIES):
            at += v >> 3
            starts.append(at)
            classes.append(v & 7)
        _runs = starts, classes
    starts, classes = _runs
    return classes[bisect.bisect_right(starts, cp) - 1]


def to_lower(cp: int) -> int:
    """llama.cpp's ``unicode_tolower``: one code point to one code point."""
    global _lower
    if _lower is None:
        v = _varints(_LOWERCASE)
        table, at = {}, 0
        for i in range(0, len(v), 2):
            at += v[i]
            table[at] = at + _unzigzag(v[i + 1])
        _lower = table
    return _lower.get(cp, cp)


def nfd(cp: int) -> int:
    """llama.cpp's ``unicode_cpts_normalize_nfd`` for one code point (its base character, or itself)."""
    global _nfd
    if _nfd is None:
        v = _varints(_NFD)
        starts, lasts, bases, at = [], [], [], 0
        for i in range(0, len(v), 3):
            at += v[i]
            starts.append(at)
            lasts.append(at + v[i + 1])
            bases.append(at + _unzigzag(v[i + 2]))
        _nfd = starts, lasts, bases
    starts, lasts, bases = _nfd
    i = bisect.bisect_right(starts, cp) - 1
    return bases[i] if i >= 0 and cp <= lasts[i] else cp
